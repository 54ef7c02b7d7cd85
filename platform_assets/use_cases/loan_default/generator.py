"""Vectorised, seeded generator of credit-risk loan applications.

Each row is one loan application. The default label is drawn from a known
logistic model of the applicant's features (so a good model can reach a ROC AUC
well above 0.75) and becomes known ``label_delay_days`` after the application,
recorded in ``label_ts``. Drift scenarios change the data after a given day:

* ``covariate``: incomes fall and debt-to-income rises (inputs move, the
  relation between inputs and default stays).
* ``concept``: the same inputs, but default follows the loan's size relative
  to income far more and debt-to-income far less (the relation moves). The
  new relation is as predictable as the old (a model that knows it reaches the
  same ROC AUC, about 0.96 on either side), so a model retrained on drifted days
  can get back to the quality it had; the old model falls to about 0.75.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from platform_assets.use_cases.loan_default.vocabulary import AGE_BANDS, COLUMNS, REGIONS, TERMS_MONTHS

SCENARIOS = ("none", "covariate", "concept")
ACTIVE_DAYS = 20  # how long an applicant keeps applying
FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jon", "Kofi", "Lena")
LAST_NAMES = ("Smith", "Okafor", "Nowak", "Garcia", "Khan", "Rossi", "Muller", "Silva", "Chen", "Ahmed")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Attributes:
        start_date: First application day.
        days: Number of days (one landing file each).
        rows_per_day: Mean applications per day (the daily count varies by +-10%).
        seed: Seed of the random generator; same config and seed give the same data.
        scenario: One of ``SCENARIOS``.
        drift_start_day: Index of the first drifted day (default: the last third).
        dirty_fraction: Share of rows made invalid on purpose (negative income,
            unknown region, missing employment, absurd loan amounts), so that
            validation and quarantine have real work to do.
        label_delay_days: (min, max) days between an application and its outcome.
    """

    start_date: dt.date = dt.date(2026, 9, 1)
    days: int = 60
    rows_per_day: int = 1000
    seed: int = 7
    scenario: str = "none"
    drift_start_day: int | None = None
    dirty_fraction: float = 0.005
    label_delay_days: tuple[int, int] = (7, 30)


class _Population:
    """What every day shares: the daily counts, the applicants' fixed attributes and their applications so far."""

    def __init__(self, config: GeneratorConfig):
        rng = np.random.default_rng(config.seed)
        self.per_day = rng.integers(int(config.rows_per_day * 0.9), int(config.rows_per_day * 1.1) + 1,
                                    size=config.days)
        # Applicants come and go: each is active for about ACTIVE_DAYS days and applies about twice
        # in that time (the window of active ids slides by half a day's applications a day). The
        # population is then the same from one day to the next once the first ACTIVE_DAYS have
        # passed, so applicant-history features do not trend as the data ages (no drift where
        # none is injected).
        self.window = max(1, config.rows_per_day * ACTIVE_DAYS // 2)
        self.shift = max(1, config.rows_per_day // 2)
        n_applicants = self.window + self.shift * config.days
        # A stream per attribute: applicant i's attributes do not depend on how many applicants there are.
        self.age_idx = np.random.default_rng([config.seed + 1, 0]).choice(len(AGE_BANDS), size=n_applicants,
                                                                          p=[0.18, 0.42, 0.3, 0.1])
        self.region_idx = np.random.default_rng([config.seed + 1, 1]).choice(len(REGIONS), size=n_applicants)
        self.applications = np.zeros(n_applicants, dtype=np.int64)  # each applicant's applications so far
        self.rows_before = np.concatenate([[0], np.cumsum(self.per_day)])


def _generate_day(config: GeneratorConfig, population: _Population, day: int) -> pd.DataFrame:
    """The applications of day ``day`` (0-based), from a random stream of that day's own, in generation order."""
    rng = np.random.default_rng([config.seed, day])
    n = int(population.per_day[day])
    drift_start = config.drift_start_day if config.drift_start_day is not None else (2 * config.days) // 3
    drifted = np.full(n, day >= drift_start and config.scenario != "none")
    applicant_id = 100_000 + day * population.shift + rng.integers(0, population.window, size=n)
    age_idx = population.age_idx[applicant_id - 100_000]
    region_idx = population.region_idx[applicant_id - 100_000]

    base = np.datetime64(config.start_date.isoformat(), "s")
    seconds = rng.integers(0, 86_400, size=n)
    application_ts = base + (day * 86_400 + seconds).astype("timedelta64[s]")

    income = np.round(rng.lognormal(mean=10.9, sigma=0.45, size=n), 2)
    age_years = np.array([22, 33, 50, 66])[age_idx] + rng.normal(0, 3, size=n)
    employment_years = np.clip(rng.gamma(2.0, 2.5, size=n), 0, np.maximum(age_years - 17, 0)).round(1)
    credit_history_years = np.clip(age_years - 18 - rng.exponential(2.0, size=n), 0, None).round(1)
    num_open_accounts = rng.poisson(4, size=n)
    num_delinquencies = rng.poisson(0.4, size=n)
    debt_to_income = np.clip(rng.beta(2, 5, size=n), 0, 0.95).round(4)
    term_months = np.array(TERMS_MONTHS)[rng.choice(2, size=n, p=[0.65, 0.35])]
    loan_amount = np.round(income * rng.uniform(0.05, 0.6, size=n), 2)

    if config.scenario == "covariate":
        income = np.where(drifted, np.round(income * 0.7, 2), income)
        debt_to_income = np.where(drifted, np.clip(debt_to_income + 0.15, 0, 0.95), debt_to_income)

    # Applications per applicant so far (earlier days, then earlier today): frequent applicants are riskier.
    order = np.argsort(application_ts, kind="stable")
    prior = np.empty(n, dtype=np.int64)
    prior[order] = (pd.Series(applicant_id[order]).groupby(applicant_id[order]).cumcount().to_numpy()
                    + population.applications[applicant_id[order] - 100_000])
    np.add.at(population.applications, applicant_id - 100_000, 1)

    loan_to_income = loan_amount / income
    # debt_to_income and loan_to_income have about the same spread (0.16), so moving weight
    # from one to the other keeps the logit's spread, hence the best reachable ROC AUC.
    w_dti, w_lti = (3.5, 1.6)
    if config.scenario == "concept":
        w_dti = np.where(drifted, 0.5, 3.5)
        w_lti = np.where(drifted, 3.8, 1.6)
    logit = (
        -3.8
        + w_dti * (debt_to_income - 0.28) / 0.16
        + 0.55 * num_delinquencies
        + w_lti * (loan_to_income - 0.325) / 0.16
        - 0.45 * (credit_history_years - 20) / 12
        - 0.35 * (employment_years - 5) / 3.5
        - 0.5 * (np.log(income) - 10.9) / 0.45
        + 0.45 * (term_months == 60)
        + np.array([0.0, 0.25, -0.1, 0.1, -0.2])[region_idx]
        + 0.35 * np.minimum(prior, 4)
    )
    p_default = 1.0 / (1.0 + np.exp(-logit))
    is_default = (rng.uniform(size=n) < p_default).astype(np.int64)
    lo, hi = config.label_delay_days
    label_ts = application_ts + (rng.integers(lo, hi + 1, size=n) * 86_400).astype("timedelta64[s]")

    first = np.array(FIRST_NAMES, dtype=object)[applicant_id % len(FIRST_NAMES)]
    last = np.array(LAST_NAMES, dtype=object)[(applicant_id // len(FIRST_NAMES)) % len(LAST_NAMES)]
    row_numbers = population.rows_before[day] + np.arange(n)
    df = pd.DataFrame(
        {
            # Application ids carry the seed so that two generated sets never collide.
            "application_id": np.char.add(f"s{config.seed}-app-", row_numbers.astype(str)).astype(object),
            "applicant_id": applicant_id,
            "applicant_name": first + " " + last,
            "email": np.char.add(np.char.add((first + "." + last).astype(str), applicant_id.astype(str)), "@example.com"),
            "phone": np.char.add("+44 7700 ", np.char.zfill((applicant_id % 1_000_000).astype(str), 6)),
            "application_ts": application_ts.astype("datetime64[us]"),
            "income": income,
            "loan_amount": loan_amount,
            "term_months": term_months,
            "employment_years": employment_years,
            "credit_history_years": credit_history_years,
            "num_open_accounts": num_open_accounts,
            "num_delinquencies": num_delinquencies,
            "debt_to_income": debt_to_income,
            "region": np.array(REGIONS, dtype=object)[region_idx],
            "age_band": np.array(AGE_BANDS, dtype=object)[age_idx],
            "is_default": is_default,
            "label_ts": label_ts.astype("datetime64[us]"),
        }
    )
    # The dirty rows of the days so far are round(rows so far x fraction): the whole set has exactly its share.
    share = lambda rows: int(np.floor(rows * config.dirty_fraction + 0.5))  # noqa: E731
    _make_dirty(df, share(population.rows_before[day + 1]) - share(population.rows_before[day]), rng)
    return df.sort_values("application_ts", kind="stable").reset_index(drop=True)


def _check(config: GeneratorConfig) -> None:
    if config.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {config.scenario!r}; choose one of {SCENARIOS}")
    if config.days < 1 or config.rows_per_day < 1:
        raise ValueError("days and rows_per_day must be positive")


def generate_days(config: GeneratorConfig) -> Iterator[pd.DataFrame]:
    """The applications of ``config`` one day at a time, in day order (memory follows a day).

    Each day draws from a random stream of its own (seed and day), so a day's rows do not depend on how
    many days are generated after it.

    Raises:
        ValueError: If the scenario is unknown or sizes are not positive.
    """
    _check(config)
    population = _Population(config)
    for day in range(config.days):
        yield _generate_day(config, population, day)


def generate_applications(config: GeneratorConfig) -> pd.DataFrame:
    """Generates all applications of ``config`` as one DataFrame, sorted by time (:func:`generate_days`, joined).

    Args:
        config: What to generate.

    Returns:
        One row per application with the columns in ``COLUMNS``.

    Raises:
        ValueError: If the scenario is unknown or sizes are not positive.
    """
    _check(config)
    return pd.concat(list(generate_days(config)), ignore_index=True)


def _make_dirty(df: pd.DataFrame, n_dirty: int, rng: np.random.Generator) -> None:
    """Breaks ``n_dirty`` of the rows in place, one kind of fault per row."""
    df["employment_years"] = df["employment_years"].astype("float64")
    if n_dirty <= 0:
        return
    rows = rng.choice(len(df), size=n_dirty, replace=False)
    kinds = rng.integers(0, 4, size=n_dirty)
    df.loc[rows[kinds == 0], "income"] = -df.loc[rows[kinds == 0], "income"]
    df.loc[rows[kinds == 1], "region"] = "atlantis"
    df.loc[rows[kinds == 2], "employment_years"] = np.nan
    df.loc[rows[kinds == 3], "loan_amount"] = df.loc[rows[kinds == 3], "income"] * 50


def write_landing_files(df: pd.DataFrame, landing_dir: Path, file_format: str = "parquet") -> list[Path]:
    """Writes one file per application day into ``landing_dir``.

    Files are named ``applications_YYYY-MM-DD.<ext>`` and written atomically
    (to a temporary name, then renamed), so a reader never sees half a file.

    Args:
        df: Applications as returned by :func:`generate_applications`.
        landing_dir: Directory to write into (created if missing).
        file_format: ``parquet`` or ``csv``.

    Returns:
        The paths written, in day order.
    """
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"unsupported landing format {file_format!r}")
    landing_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    days = df["application_ts"].dt.date
    for day, part in df.groupby(days, sort=True):
        path = landing_dir / f"applications_{day.isoformat()}.{file_format}"
        tmp = path.with_name(f".{path.name}.tmp")
        if file_format == "parquet":
            part.to_parquet(tmp, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
        else:
            part.to_csv(tmp, index=False)
        tmp.replace(path)
        paths.append(path)
    return paths


def write_sample(landing_dir: Path, start: dt.date, days: int, rows_per_day: int, seed: int,
                 file_format: str = "parquet", scenario: str = "none", dirty_fraction: float = 0.005) -> int:
    """The use case's sample data (declared as ``sample_data``): ``days`` landing files from ``start``.

    Returns:
        The number of rows written.
    """
    config = GeneratorConfig(start_date=start, days=days, rows_per_day=rows_per_day, seed=seed, scenario=scenario,
                             dirty_fraction=dirty_fraction)
    rows = 0
    for day in generate_days(config):  # one day in memory at a time
        write_landing_files(day, landing_dir, file_format)
        rows += len(day)
    return rows

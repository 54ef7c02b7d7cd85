"""Seeded generator of subscription snapshots with a known churn model (no dependence on gender)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from platform_assets.use_cases.customer_churn.schema import GENDERS, PAYMENT_METHODS, PLANS

COLUMNS = ("subscription_id", "contact_email", "snapshot_ts", "tenure_months", "monthly_charges",
           "support_calls_90d", "plan", "payment_method", "gender", "churned")
FILE_PREFIX = "subscriptions"


@dataclass(frozen=True)
class ChurnConfig:
    """What to generate: ``days`` daily files of about ``rows_per_day`` snapshots from ``start_date``."""

    start_date: dt.date = dt.date(2026, 9, 1)
    days: int = 30
    rows_per_day: int = 300
    seed: int = 11
    dirty_fraction: float = 0.005


def generate_subscriptions(config: ChurnConfig = ChurnConfig()) -> pd.DataFrame:
    """Snapshots with churn drawn from a logistic model of support calls, tenure, charges, plan and payment."""
    rng = np.random.default_rng(config.seed)
    counts = rng.integers(int(config.rows_per_day * 0.9), int(config.rows_per_day * 1.1) + 1, config.days)
    day = np.repeat(np.arange(config.days), counts)
    n = len(day)
    start = pd.Timestamp(config.start_date)
    ts = start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    tenure = rng.gamma(2.0, 14.0, n).astype(int)
    plan = rng.choice(PLANS, n, p=[0.5, 0.35, 0.15])
    charges = np.round(np.select([plan == "basic", plan == "standard"], [25.0, 55.0], 95.0)
                       * rng.uniform(0.8, 1.25, n), 2)
    calls = rng.poisson(1.2, n)
    payment = rng.choice(PAYMENT_METHODS, n, p=[0.5, 0.3, 0.2])
    gender = rng.choice(GENDERS, n, p=[0.48, 0.47, 0.05])
    logit = (-1.2 + 0.85 * (calls - 1.2) - 0.05 * (tenure - 28) + 0.02 * (charges - 50)
             + np.where(payment == "invoice", 0.8, 0.0) - np.where(plan == "premium", 0.6, 0.0))
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({
        "subscription_id": [f"sub-{d:04d}-{i:06d}" for d, i in zip(day, range(n))],
        "contact_email": [f"customer{i}@example.com" for i in range(n)],
        "snapshot_ts": ts,
        "tenure_months": tenure,
        "monthly_charges": charges,
        "support_calls_90d": calls,
        "plan": plan,
        "payment_method": payment,
        "gender": gender,
        "churned": churned,
    })
    dirty = rng.uniform(size=n) < config.dirty_fraction
    df["monthly_charges"] = df["monthly_charges"].mask(dirty, -1.0)  # invalid on purpose: quarantined
    return df[list(COLUMNS)]


def write_landing_files(df: pd.DataFrame, landing: Path, file_format: str = "csv") -> list[Path]:
    """One ``subscriptions_YYYY-MM-DD.<csv|parquet>`` per snapshot day, written atomically."""
    landing.mkdir(parents=True, exist_ok=True)
    written = []
    for day, part in df.groupby(df["snapshot_ts"].dt.date, sort=True):
        path = landing / f"{FILE_PREFIX}_{day.isoformat()}.{file_format}"
        tmp = landing / f".{path.name}.tmp"
        if file_format == "parquet":
            part.to_parquet(tmp, index=False)
        else:
            part.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        tmp.replace(path)
        written.append(path)
    return written


def write_sample(landing_dir: Path, start: dt.date, days: int, rows_per_day: int, seed: int,
                 file_format: str = "csv", dirty_fraction: float = 0.005) -> int:
    """The use case's sample data (declared as ``sample_data``): ``days`` landing files from ``start``.

    Returns:
        The number of rows written.
    """
    df = generate_subscriptions(ChurnConfig(start_date=start, days=days, rows_per_day=rows_per_day, seed=seed,
                                            dirty_fraction=dirty_fraction))
    write_landing_files(df, landing_dir, file_format)
    return len(df)

"""The duplicate policy through real runs: one range run and day-by-day runs in any order end the same way."""

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from platform_assets import definitions, settings
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from tests.conftest import ingest_days, loan, loan_keys

DAYS = ["2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"]
D1, D2, D3, D4 = DAYS
HOUR = pd.Timedelta(hours=1)
# Rows a day before the planted copies (enough that two quarantined rows stay under the 5% gate); a planted row is row N + 1.
N = 50


def _shifted(rows: pd.DataFrame, by: pd.Timedelta, **changes) -> pd.DataFrame:
    """Copies of ``rows`` dated ``by`` later (the outcome moves with the application)."""
    return rows.assign(application_ts=rows["application_ts"] + by, label_ts=rows["label_ts"] + by, **changes)


def landing_days() -> dict[str, pd.DataFrame]:
    """Four days of ``N`` applications with copies planted after them; the comments say which copy is first."""
    df = generate_applications(GeneratorConfig(start_date=dt.date(2026, 9, 1), days=4, rows_per_day=N + 10, dirty_fraction=0))
    day = df["application_ts"].dt.strftime("%Y-%m-%d")
    parts = {d: df[day == d].head(N).reset_index(drop=True) for d in DAYS}
    first_of = {d: parts[d].head(2).copy() for d in DAYS}
    # D1, one file: its row 1 again an hour later (row N + 1): the later copy is quarantined.
    parts[D1] = pd.concat([parts[D1], _shifted(first_of[D1].head(1), HOUR)], ignore_index=True)
    # D4: a copy of D1's row 2, three days later: D1's copy stays valid.
    parts[D4] = pd.concat([parts[D4], _shifted(first_of[D1].iloc[[1]], 72 * HOUR)], ignore_index=True)
    # D3: a copy of D2's row 1 dated an hour earlier (it arrives in a later file): D3's copy is the first.
    parts[D3] = pd.concat([parts[D3], _shifted(first_of[D2].head(1), -HOUR)], ignore_index=True)
    # D2: an earlier copy of D4's row 1 that fails another rule: it does not count, D4's copy stays valid.
    parts[D2] = pd.concat([parts[D2], _shifted(first_of[D4].head(1), -48 * HOUR, income=-1.0)], ignore_index=True)
    return parts


def landing_folder(root: Path) -> Path:
    """Where the loan-default source's files land under ``root``."""
    return settings.paths(root).landing / loan().source.landing_folder


def write_day(root: Path, day: str, frame: pd.DataFrame) -> None:
    landing = landing_folder(root)
    landing.mkdir(parents=True, exist_ok=True)
    frame.to_csv(landing / f"applications_{day}.csv", index=False)


def outcome(root: Path) -> dict:
    """Per day: the valid (file, row)s, and the quarantined ones with their duplicate-of and reasons (file names only)."""
    with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
        valid = con.execute("SELECT _partition, _source_file, _source_row FROM validated.applications").fetchall()
        quarantined = con.execute(
            "SELECT _partition, _source_file, _source_row, _duplicate_of, _quarantine_reasons FROM quarantine.applications"
        ).fetchall()
    name = lambda text: text.replace(str(landing_folder(root)) + "/", "") if text else text  # noqa: E731
    days: dict = {d: (set(), set()) for d in DAYS}
    for day, file, row in valid:
        days[day][0].add((name(file), row))
    for day, file, row, first, reason in quarantined:
        days[day][1].add((name(file), row, name(first), name(reason)))
    return days


def rewritten(result) -> list[str]:
    key = loan_keys().validated
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return [d for e in events for d in e.materialization.metadata["rewritten_days"].value]


def run_days(root: Path, parts: dict, order: list[list[str]]) -> list:
    """Writes the landing files, then one run per group of days (each group a range), in ``order``."""
    for day, frame in parts.items():
        write_day(root, day, frame)
    resources = definitions.embedded_resources(root)
    results = []
    for group in order:
        result = ingest_days(resources, group[0], group[-1])
        assert result.success
        results.append(result)
    return results


EXPECTED = {
    D1: {("applications_2026-09-01.csv", N + 1, "applications_2026-09-01.csv:1",
          "application_id: duplicate of applications_2026-09-01.csv:1")},
    D4: {("applications_2026-09-04.csv", N + 1, "applications_2026-09-01.csv:2",
          "application_id: duplicate of applications_2026-09-01.csv:2")},
}


@pytest.fixture(scope="module")
def parts():
    return landing_days()


@pytest.fixture(scope="module")
def range_outcome(parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("range")
    results = run_days(root, parts, [DAYS])
    return root, outcome(root), results


def test_one_range_run_applies_the_policy(range_outcome, parts):
    _, days, results = range_outcome
    assert rewritten(results[0]) == []
    assert days[D1][1] == EXPECTED[D1] and days[D4][1] == EXPECTED[D4] and days[D3][1] == set()
    d2 = sorted(days[D2][1])
    assert [(f, r, first) for f, r, first, _ in d2] == [
        ("applications_2026-09-02.csv", 1, f"applications_2026-09-03.csv:{N + 1}"),
        ("applications_2026-09-02.csv", N + 1, None),
    ]
    assert "income: greater_than(0)" in d2[1][3]
    # Every raw row is on exactly one side; each application id is valid exactly once.
    assert all(len(days[d][0]) + len(days[d][1]) == len(parts[d]) for d in DAYS)
    ids = pd.concat(parts.values())["application_id"]
    assert sum(len(v) for v, _ in days.values()) == ids.nunique()


@pytest.mark.parametrize(
    "order, rewrites",
    [
        pytest.param([[D1], [D2], [D3], [D4]], [[], [], [D2], []], id="ascending"),
        pytest.param([[D4], [D3], [D2], [D1]], [[], [], [], [D4]], id="descending"),
        pytest.param([[D3], [D1], [D4], [D2]], [[], [], [], []], id="mixed"),
        pytest.param([[D2, D3], [D4], [D1]], [[], [], [D4]], id="ranges"),
    ],
)
def test_day_by_day_in_any_order_ends_like_the_range_run(parts, range_outcome, tmp_path, order, rewrites):
    results = run_days(tmp_path, parts, order)
    assert outcome(tmp_path) == range_outcome[1]
    # A run that brings an earlier copy rewrites the day that held the first one, and says so.
    assert [rewritten(r) for r in results] == rewrites


@pytest.mark.parametrize("batch_rows", [N + 5, 2 * N + 5])
def test_a_range_run_in_batches_of_days_ends_like_one_pass(parts, range_outcome, tmp_path, monkeypatch, batch_rows):
    """Batches of one or two days (PLATFORM_BATCH_ROWS) read and write the run's days in turn: the same outcome."""
    monkeypatch.setenv("PLATFORM_BATCH_ROWS", str(batch_rows))
    results = run_days(tmp_path, parts, [DAYS])
    assert outcome(tmp_path) == range_outcome[1]
    events = {e.asset_key: e.materialization.metadata for e in results[0].get_asset_materialization_events()}
    assert events[loan_keys().validated]["batches"].value == (4 if batch_rows < 2 * N else 2)
    assert events[loan_keys().raw]["batches"].value == (4 if batch_rows < 2 * N else 2)
    assert events[loan_keys().raw]["dagster/row_count"].value == sum(len(p) for p in parts.values())
    # The same files again: no day is rewritten.
    again = ingest_days(definitions.embedded_resources(tmp_path), D1, D4)
    raw = {e.asset_key: e.materialization.metadata for e in again.get_asset_materialization_events()}[loan_keys().raw]
    assert raw["unchanged"].value is True and raw["days_rewritten"].value == 0


def test_re_running_changes_nothing_and_a_re_ingest_that_drops_the_first_copy_reinstates_the_next(parts, tmp_path):
    results = run_days(tmp_path, parts, [DAYS, DAYS, [D3]])
    before = outcome(tmp_path)
    assert all(rewritten(r) == [] for r in results[1:])
    # D3's file is replaced without its copy of D2's row 1: D2's own copy becomes the first again.
    write_day(tmp_path, D3, parts[D3].head(N))
    result = ingest_days(definitions.embedded_resources(tmp_path), D3, D3)
    assert result.success and rewritten(result) == [D2]
    after = outcome(tmp_path)
    assert ("applications_2026-09-02.csv", 1) in after[D2][0] and ("applications_2026-09-02.csv", 1) not in before[D2][0]
    assert {d: after[d] for d in (D1, D4)} == {d: before[d] for d in (D1, D4)}
    # The same files in one fresh range run give the same outcome.
    fresh = tmp_path / "fresh"
    run_days(fresh, {**parts, D3: parts[D3].head(N)}, [DAYS])
    assert outcome(fresh) == after

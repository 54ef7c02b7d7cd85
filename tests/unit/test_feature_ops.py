"""Pure feature-store helpers: what changed since the last export, where materialization starts, freshness."""

import datetime as dt

import duckdb
import pandas as pd

from platform_assets.features import feast_ops
from platform_assets.features import online_load

T0 = dt.datetime(2026, 5, 1)
MARTS = ("fct_one", "fct_two")


def _marts(con, rows):
    frame = pd.DataFrame(rows, columns=["application_id", "event_timestamp", "x"])
    con.execute("CREATE SCHEMA IF NOT EXISTS features")
    for table in MARTS:
        con.execute(f"CREATE OR REPLACE TABLE features.{table} AS SELECT * FROM frame")


def test_earliest_change_finds_new_late_and_changed_rows(tmp_path):
    con = duckdb.connect()
    rows = [("a", T0, 1.0), ("b", T0 + dt.timedelta(days=1), 2.0), ("c", T0 + dt.timedelta(days=2), 3.0)]
    _marts(con, rows)
    assert online_load.earliest_change(con, tmp_path, MARTS) == T0  # never exported: everything
    feast_ops.export_marts(con, tmp_path, MARTS)
    assert online_load.earliest_change(con, tmp_path, MARTS) is None  # nothing changed
    late = ("d", T0 + dt.timedelta(hours=12), 4.0)  # a backfilled row older than the newest
    _marts(con, [*rows, late])
    assert online_load.earliest_change(con, tmp_path, MARTS) == late[1]
    _marts(con, [("a", T0, 1.0), ("b", T0 + dt.timedelta(days=1), 2.5), rows[2]])  # a corrected value
    assert online_load.earliest_change(con, tmp_path, MARTS) == T0 + dt.timedelta(days=1)


def test_incremental_start():
    oldest, newest = T0, T0 + dt.timedelta(days=10)
    online = T0 + dt.timedelta(days=10, seconds=1)
    aware = online.replace(tzinfo=dt.timezone.utc)
    assert online_load.incremental_start(None, {"a": None, "b": online}, oldest, newest) == oldest
    assert online_load.incremental_start(None, {"a": aware, "b": aware}, oldest, newest) is None
    late = T0 + dt.timedelta(days=3)
    assert online_load.incremental_start(late, {"a": aware, "b": aware}, oldest, newest) == late
    behind = T0 + dt.timedelta(days=8)  # a materialization that stopped half way
    assert online_load.incremental_start(None, {"a": aware, "b": behind}, oldest, newest) == behind


def test_freshness_findings_measure_lag_against_the_data_not_the_clock():
    newest = T0 + dt.timedelta(days=1)
    online = {"a": (newest + dt.timedelta(seconds=1)).replace(tzinfo=dt.timezone.utc)}
    found = feast_ops.freshness_findings(newest, newest, online, now=newest + dt.timedelta(days=30))
    assert found == {"feature_lag_hours": 0.0, "online_lag_hours": 0.0, "feature_age_hours": 720.0}
    found = feast_ops.freshness_findings(newest + dt.timedelta(hours=6), newest, {"a": T0}, now=newest)
    assert found["feature_lag_hours"] == 6.0 and found["online_lag_hours"] == 24.0
    assert feast_ops.freshness_findings(newest, newest, {"a": None}, now=newest)["online_lag_hours"] is None


def test_only_labels_known_by_the_cutoff_take_part():
    """The training set's own rule (once re-derived by its leakage check): an outcome known after ``as_of``
    never trains."""
    from platform_assets.declared import use_case

    loan = use_case("loan_default")
    t = pd.Timestamp("2026-01-10")
    labelled = pd.DataFrame({
        "application_id": ["a", "b", "c"], "applicant_id": [1, 2, 3],
        "application_ts": [t - pd.Timedelta(days=5), t - pd.Timedelta(days=4), t - pd.Timedelta(days=3)],
        "age_band": ["18-25"] * 3, "is_default": [0, 1, 0],
        "label_ts": [t - pd.Timedelta(days=1), t, t + pd.Timedelta(seconds=1)]})
    rows = feast_ops.entity_rows(labelled, t, loan)
    assert rows["application_id"].tolist() == ["a", "b"] and (rows["label_ts"] <= t).all()


def test_splits_follow_time_whatever_the_row_order():
    """No validation or test row is older than the newest row of an earlier split: the entity rows come in time
    order whatever order the labelled rows had, and the training set's writer splits by position in that order."""
    import numpy as np

    from platform_assets.declared import use_case
    from platform_assets.features.training_file import split_labels

    rng = np.random.default_rng(3)
    times = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10_000, 500), unit="min")
    labelled = pd.DataFrame({"application_id": [f"a{i}" for i in range(500)], "applicant_id": range(500),
                             "application_ts": times, "age_band": "18-25", "is_default": 0, "label_ts": times})
    rows = feast_ops.entity_rows(labelled, times.max(), use_case("loan_default"))
    split = pd.Series(split_labels(0, len(rows), len(rows), (0.7, 0.85)))
    newest = rows.groupby(split)["event_timestamp"].max()
    oldest = rows.groupby(split)["event_timestamp"].min()
    assert split.value_counts().to_dict() == {"train": 350, "validation": 75, "test": 75}
    assert oldest["validation"] >= newest["train"] and oldest["test"] >= newest["validation"]

"""The dbt project on its own: windowed features see only the past, incremental equals full refresh."""

import datetime as dt
import os
import subprocess

import duckdb
import pandas as pd
import pytest

from platform_assets import definitions, settings
from tests.conftest import PROJECT_ROOT, ingest_days, loan_asset, write_sample_landing

DBT = PROJECT_ROOT / ".venv" / "bin" / "dbt"
WINDOWS = "features.int_applicant_windows"


def _dbt(root, *args):
    """Runs the dbt CLI from dbt/ as a user would, the warehouse found through PLATFORM_HOME only.

    Its artifacts and logs go under ``root``: a manifest written into the project's own target/ would
    change the one the code location's cached dbt specs were derived from, under a test running beside.
    """
    env = {k: v for k, v in os.environ.items() if k != "PLATFORM_DUCKDB_PATH"}
    env.update(PLATFORM_HOME=str(root), DBT_TARGET_PATH=str(root / "dbt_target"), DBT_LOG_PATH=str(root / "dbt_logs"))
    out = subprocess.run([str(DBT), *args], cwd=PROJECT_ROOT / "dbt", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _windows(con):
    return (
        con.execute(f"SELECT * EXCLUDE (_built_at) FROM {WINDOWS}").df()
        .sort_values("application_id").reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """A warehouse with 30 days of validated applications; returns (root, all validated rows)."""
    root = tmp_path_factory.mktemp("dbt_home")
    write_sample_landing(root, days=30, rows_per_day=60, start=dt.date(2026, 3, 1))
    assert ingest_days(definitions.embedded_resources(root), "2026-03-01", "2026-03-30").success
    with duckdb.connect(str(settings.paths(root).warehouse)) as con:
        rows = con.execute("SELECT * FROM validated.applications").df()
    return root, rows


def test_windows_count_only_earlier_applications(validated):
    root, _ = validated
    out = _dbt(root, "build", "--select", "path:models/loan_default")
    assert "ERROR=0" in out and "assert_history_sees_only_the_past" in out
    with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
        history = con.execute("SELECT * FROM features.fct_applicant_history").df()
        apps = con.execute("SELECT application_id, applicant_id, application_ts, loan_amount FROM features.stg_applications").df()
    # Recompute by hand for the applicants with the most applications. History is as of the
    # start of the application's day: applications on earlier days only (use_cases/loan_default/request_features.py).
    busiest = apps["applicant_id"].value_counts().index[:5]
    for applicant in busiest:
        mine = apps[apps["applicant_id"] == applicant]
        for _, row in mine.iterrows():
            day = row["application_ts"].normalize()
            before = mine[mine["application_ts"] < day]
            got = history.set_index("application_id").loc[row["application_id"]]
            recent = before[before["application_ts"] >= day - pd.Timedelta(days=30)]
            assert got["prior_applications_30d"] == len(recent)
            year = before[before["application_ts"] >= day - pd.Timedelta(days=365)]
            assert got["prior_loan_sum_365d"] == pytest.approx(year["loan_amount"].sum())
            if len(before):
                gap = (row["application_ts"] - before["application_ts"].max()) / pd.Timedelta(days=1)
                assert got["days_since_last_application"] == pytest.approx(gap)
            else:
                assert got["days_since_last_application"] == -1.0
    assert history["prior_applications_365d"].max() >= 2  # some applicants do come back


def test_incremental_build_equals_a_full_refresh(validated):
    root, rows = validated
    warehouse = str(settings.paths(root).warehouse)
    day = rows["application_ts"].dt.floor("D")
    days = sorted(day.unique())
    late = days[5]  # a day that arrives late (a backfilled partition)
    first = rows[(day < days[20]) & (day != late)]
    with duckdb.connect(warehouse) as con:
        con.execute("CREATE OR REPLACE TABLE validated.applications AS SELECT * FROM first")
    _dbt(root, "run", "--full-refresh", "--select", "path:models/loan_default")
    with duckdb.connect(warehouse, read_only=True) as con:
        built_before = con.execute(f"SELECT DISTINCT _built_at FROM {WINDOWS}").fetchone()[0]

    # Nothing changed: an incremental run keeps every row as it was.
    _dbt(root, "run", "--select", "int_applicant_windows")
    with duckdb.connect(warehouse) as con:
        assert con.execute(f"SELECT DISTINCT _built_at FROM {WINDOWS}").fetchall() == [(built_before,)]
        con.execute("CREATE OR REPLACE TABLE validated.applications AS SELECT * FROM rows")

    # New days and the late day: only days from the late day on are recomputed.
    _dbt(root, "run", "--select", "path:models/loan_default")
    with duckdb.connect(warehouse, read_only=True) as con:
        incremental = _windows(con)
        kept = con.execute(
            f"SELECT max(application_day) FROM {WINDOWS} WHERE _built_at = ?", [built_before]
        ).fetchone()[0]
        mart_incremental = con.execute("SELECT * FROM features.fct_applicant_history ORDER BY application_id").df()
    assert pd.Timestamp(kept) < pd.Timestamp(late)  # days before the late one were not rewritten
    assert len(incremental) == len(rows)

    _dbt(root, "run", "--full-refresh", "--select", "path:models/loan_default")
    with duckdb.connect(warehouse, read_only=True) as con:
        full = _windows(con)
        mart_full = con.execute("SELECT * FROM features.fct_applicant_history ORDER BY application_id").df()
    pd.testing.assert_frame_equal(incremental, full)
    pd.testing.assert_frame_equal(mart_incremental, mart_full)


def test_a_subset_run_on_a_fresh_warehouse_skips_tests_that_read_models_not_built_yet(tmp_path):
    """Automation may build the staging model alone first: the history test (which also reads the mart) waits."""
    import dagster as dg

    dbt_feature_models = loan_asset("features", "stg_applications")  # the use case's dbt models, one definition
    write_sample_landing(tmp_path, days=3, rows_per_day=40, start=dt.date(2026, 3, 1))
    resources = definitions.embedded_resources(tmp_path)
    assert ingest_days(resources, "2026-03-01", "2026-03-03").success
    result = dg.materialize([dbt_feature_models], resources={k: resources[k] for k in ("dbt", "warehouse")},
                            selection="loan_default/features/stg_applications", raise_on_error=False)
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "loan_default/features/stg_applications"}
    with duckdb.connect(str(settings.paths(tmp_path).warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM features.stg_applications").fetchone()[0] > 0


def _dbt_test(root, target, *args) -> dict[str, str]:
    """``dbt test`` as a user runs it (a failing test is not an error here): test name -> status
    (``pass``, ``fail``, ``error``), read from its run results."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "PLATFORM_DUCKDB_PATH"}
    env.update(PLATFORM_HOME=str(root), DBT_LOG_PATH=str(target))
    subprocess.run([str(DBT), "test", "--target-path", str(target), *args], cwd=PROJECT_ROOT / "dbt", env=env,
                   capture_output=True, text=True)
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r["status"] for r in results}


def test_each_kind_of_dbt_test_fails_on_its_planted_fault(validated, tmp_path):
    """On a copy of the built marts, one fault per kind of test: each named test fails, and no other."""
    import shutil

    root, _ = validated
    _dbt(root, "build", "--select", "path:models/loan_default")
    copy = tmp_path / "copy"
    shutil.copytree(settings.paths(root).warehouse.parent, settings.paths(copy).warehouse.parent)
    selection = ("--select", "path:models/loan_default", "path:tests")
    clean = _dbt_test(copy, tmp_path / "target", *selection)
    assert clean and set(clean.values()) == {"pass"}, clean
    features, history = "features.fct_application_features", "features.fct_applicant_history"
    with duckdb.connect(str(settings.paths(copy).warehouse)) as con:
        ids = [r[0] for r in con.execute(
            f"SELECT application_id FROM {history} WHERE prior_applications_30d > 0 ORDER BY 1 LIMIT 3").fetchall()]
        con.execute(f"INSERT INTO {features} SELECT * FROM {features} WHERE application_id = ?", [ids[0]])  # unique
        con.execute(f"UPDATE {features} SET region = 'atlantis' WHERE application_id = ?", [ids[1]])  # accepted_values
        con.execute(f"UPDATE {features} SET loan_to_avg_prior_loan_365d = -1 WHERE application_id = ?", [ids[1]])
        con.execute(f"UPDATE {features} SET loan_to_income = NULL WHERE application_id = ?", [ids[2]])  # not_null
        con.execute(f"UPDATE {history} SET application_id = 'orphan' WHERE application_id = ?", [ids[2]])  # relationships
        # More prior applications in 30 days than in 90 (bounded), and not the brute-force recount (the past).
        con.execute(f"UPDATE {history} SET prior_applications_30d = prior_applications_90d + 1 WHERE application_id = ?",
                    [ids[0]])
        con.execute(f"UPDATE {history} SET prior_applications_90d = prior_applications_90d + 5, "
                    "prior_applications_365d = prior_applications_365d + 5, prior_applications_30d = "
                    "prior_applications_30d WHERE application_id = ?", [ids[1]])
    found = _dbt_test(copy, tmp_path / "target", *selection)
    failed = {name for name, status in found.items() if status == "fail"}
    expected = {
        "unique_fct_application_features_application_id",
        "accepted_values_fct_application_features_region__north__south__east__west__central",
        "non_negative_fct_application_features_loan_to_avg_prior_loan_365d",
        "not_null_fct_application_features_loan_to_income",
        "relationships_fct_applicant_history_application_id__application_id__ref_fct_application_features_",
        "assert_history_counts_bounded",
        "assert_history_sees_only_the_past",
    }
    assert failed == expected, found

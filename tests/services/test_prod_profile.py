"""One use case through the whole graph under PLATFORM_PROFILE=prod, on PostgreSQL and Redis.

The same commands as ``make materialize``, run as processes with the prod profile's environment: landing
files to a served model and a drift report. Then each service is asked what it holds, and PLATFORM_HOME is
checked to hold no state.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.services.conftest import POSTGRES, USE_CASE, query as _query


def test_every_run_succeeded_and_is_recorded_in_postgres(graph):
    runs = _query(graph["databases"]["dagster"], "SELECT status, count(*) FROM runs GROUP BY status")
    # ingest_days (one run for the range), features_to_serving, inference_days, drift
    assert dict(runs) == {"SUCCESS": 4}


def test_the_warehouse_is_a_ducklake_in_postgres_with_its_files_on_the_shared_store(graph):
    tables = {r[0] for r in _query(graph["databases"]["lake"], "SELECT table_name FROM ducklake_table")}
    assert {"applications", "inference_log", "fct_application_features"} <= tables
    files = list((graph["root"] / "shared" / "warehouse" / "lake").rglob("*.parquet"))
    assert files, "no DuckLake data file on the shared store"
    # Rows conserved from the landing files to the warehouse: every landed row is validated or quarantined.
    import pandas as pd

    from platform_assets.warehouse import Warehouse

    lake = Warehouse(catalog=graph["env"]["PLATFORM_WAREHOUSE_URL"],
                     data_path=str(graph["root"] / "shared" / "warehouse" / "lake"))
    with lake.connect(read_only=True) as con:
        raw = con.execute("SELECT count(*) FROM raw.applications").fetchone()[0]
        valid = con.execute("SELECT count(*) FROM validated.applications").fetchone()[0]
        quarantined = con.execute("SELECT count(*) FROM quarantine.applications").fetchone()[0]
    landed = sum(len(pd.read_parquet(p)) for p in (graph["root"] / "shared" / "landing").rglob("*.parquet"))
    assert raw == landed > 0
    assert valid + quarantined == raw and valid > 0


def test_mlflow_feast_and_redis_hold_the_model_the_registry_and_the_online_features(graph):
    versions = _query(graph["databases"]["mlflow"], "SELECT name, version FROM model_versions")
    assert versions and all(name for name, _ in versions)
    artifacts = list((graph["root"] / "shared" / "mlflow" / "artifacts").rglob("MLmodel"))
    assert artifacts, "the model's artifacts are not on the shared store"
    registry_tables = {r[0] for r in _query(graph["databases"]["feast"],
                                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "feature_views" in registry_tables
    assert graph["redis"].dbsize() > 0, "nothing materialized into the Redis online store"


def test_the_model_serves_and_the_drift_report_is_on_the_shared_store(graph):
    shared = graph["root"] / "shared"
    deployment = json.loads((shared / "serving" / USE_CASE / "deployment.json").read_text())
    assert "answered" in graph["traffic"] and ", answered 0," not in graph["traffic"]
    health = requests.get(deployment["url"].rsplit("/api", 1)[0] + "/health/ping", timeout=10)
    assert health.status_code < 500
    assert (shared / "reports" / USE_CASE / "drift" / "drift_report.html").is_file()


def test_nothing_but_caches_is_written_under_platform_home(graph):
    home = graph["root"] / "home"
    written = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()]
    assert written == [], f"PLATFORM_HOME holds state in the prod profile: {written[:20]}"

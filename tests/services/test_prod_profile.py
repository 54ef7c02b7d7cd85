"""One use case through the whole graph under PLATFORM_PROFILE=prod, on PostgreSQL and Redis.

The same commands as ``make materialize``, run as processes with the prod profile's environment: landing
files to a served model and a drift report. Then each service is asked what it holds, and PLATFORM_HOME is
checked to hold no state. Last, runs side by side: 4 ingest runs of different days and a retrain while 8
callers are served; every run succeeds, rows are conserved, nothing meets a lock and no request fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
import threading
import time

import pandas as pd

import pytest
import requests

from tests.conftest import PROJECT_ROOT
from tests.services.conftest import DAYS, POSTGRES, USE_CASE, query as _query, run

LOCK_ERRORS = re.compile(r"database is locked|Could not set lock|stayed locked|lock on file", re.IGNORECASE)


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


def _lake(graph):
    from platform_assets.warehouse import Warehouse

    return Warehouse(catalog=graph["env"]["PLATFORM_WAREHOUSE_URL"],
                     data_path=str(graph["root"] / "shared" / "warehouse" / "lake"))


def test_opening_the_ui_on_the_finished_platform_starts_no_run(graph):
    """As `make ui` after `make demo`: the daemon's first ticks (every sensor twice from a fresh cursor, the
    automation conditions twice) ask for no run, since everything landed is ingested and everything served is
    logged and judged."""
    out = run(graph["env"], str(PROJECT_ROOT / "tests" / "services" / "first_ticks.py"))
    requested = json.loads(out.strip().splitlines()[-1])
    assert "loan_default__landing_files" in requested and "platform_automation" in requested
    # The one run the first ticks may ask for: the retrain the newest drift report calls for. This short history
    # drifts by construction (the generator's applicant histories grow over their first 20 days), which a demo's
    # longer history does not; never a run for rows or traffic already ingested.
    drift = requested.pop(f"{USE_CASE}__retrain_on_drift")
    assert {name: asked for name, asked in requested.items() if asked} == {}
    assert all(a["tags"]["platform/trigger"] == "drift" and "%" in a["tags"]["platform/retrain_reason"] for a in drift)


def test_four_ingest_runs_and_a_retrain_side_by_side_while_callers_are_served(graph):
    from platform_assets.declared import use_case
    from platform_assets.traffic import send_requests

    env, shared = graph["env"], graph["root"] / "shared"
    # Four days of the history delivered again, with other rows (another seed): four runs that replace them.
    first = dt.date.fromisoformat(graph["last"]) - dt.timedelta(days=DAYS - 4)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(4)]
    run(env, "-m", "platform_assets", "generate", "--use-case", USE_CASE, "--days", "4", "--rows-per-day", "300",
        "--start", days[0], "--seed", "99")
    source = use_case(USE_CASE).source
    with _lake(graph).connect(read_only=True) as con:
        rows = con.execute(f"SELECT * FROM {source.validated_table} WHERE _partition = ?", [graph["last"]]).df()
    url = json.loads((shared / "serving" / USE_CASE / "deployment.json").read_text())["url"]

    stop, batches = threading.Event(), []

    def callers():  # 8 callers at a time, batch after batch, until the runs are done
        while not stop.is_set():
            batches.append(send_requests(url, rows.sample(min(len(rows), 200), random_state=len(batches)), source,
                                         concurrency=8))

    traffic = threading.Thread(target=callers)
    traffic.start()
    started = time.monotonic()
    launch = [sys.executable, "-m", "platform_assets.launch", "--job"]
    commands = [[*launch, f"{USE_CASE}__ingest_days", "--partition", day] for day in days]
    commands.append([*launch, f"{USE_CASE}__retrain"])
    processes = [subprocess.Popen(c, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for c in commands]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    wall_s = time.monotonic() - started
    stop.set()
    traffic.join(timeout=120)

    sent = sum(b.sent for b in batches)
    failed = sum(sum(b.errors.values()) for b in batches)
    latencies = sorted(ms for b in batches for ms in b.latencies_ms)
    print(f"\n4 ingest runs + 1 retrain side by side: {wall_s:.1f} s; {sent} requests from 8 callers, "
          f"{failed} failed, p50 {latencies[len(latencies) // 2]:.1f} ms, p99 {latencies[int(len(latencies) * .99)]:.1f} ms")
    for command, process, output in zip(commands, processes, outputs):
        # The retrain's challenger may lose to the champion on the test split (its data are being replaced
        # meanwhile, and a few hundred test rows are noisy): its gate then stops the run before the alias, as
        # designed. That verdict is not what this test is about; any other failed step is.
        gate_said_no = f"Steps failed: ['{USE_CASE}__evaluate__eval_report_eval_gate_passed']" in output
        assert process.returncode == 0 or (command[-1].endswith("__retrain") and gate_said_no), \
            f"{' '.join(command[3:])} failed:\n{output[-4000:]}"
        assert not LOCK_ERRORS.search(output), f"{' '.join(command[3:])} met a lock:\n{LOCK_ERRORS.search(output)}"
    assert sent > 0 and failed == 0, [dict(b.errors) for b in batches if b.errors]

    # Rows conserved: each day's rows as landed now, all of them in raw, each either valid or quarantined.
    landed = {p.stem.rsplit("_", 1)[-1]: len(pd.read_parquet(p))
              for p in (shared / "landing").rglob(f"{source.file_prefix}_*.parquet")}
    with _lake(graph).connect(read_only=True) as con:
        raw = dict(con.execute(f"SELECT _partition, count(*) FROM {source.raw_table} GROUP BY 1").fetchall())
        kept = dict(con.execute(
            f"SELECT _partition, count(*) FROM (SELECT _partition FROM {source.validated_table} UNION ALL "
            f"SELECT _partition FROM {source.quarantine_table}) GROUP BY 1").fetchall())
        read = dict(con.execute(f"SELECT _partition, sha256 FROM {source.landing_files_table}").fetchall())
    assert raw == landed and kept == raw
    # The four runs read the files delivered again (their bytes, hashed here).
    files = {p.stem.rsplit("_", 1)[-1]: p for p in (shared / "landing").rglob(f"{source.file_prefix}_*.parquet")}
    assert all(read[day] == hashlib.sha256(files[day].read_bytes()).hexdigest() for day in days)

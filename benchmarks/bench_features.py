"""Benchmarks of the feature stage: dbt vs plain DuckDB, Feast materialization, online lookups.

Run: `.venv/bin/python benchmarks/bench_features.py [--days 100 --rows-per-day 1000]`.
Prints a table and writes benchmarks/out/features.json. Everything runs under a
temporary state root; no Dagster.

- dbt: `dbt run --full-refresh` of the feature models (wall time of the CLI, and
  dbt's own time in the models) against the same compiled SQL run directly in
  DuckDB; then an incremental `dbt run` after one new day.
- Feast: apply and materialize every row of both marts into the SQLite online store.
- Online lookups of the model's feature service, one entity and batches of 100,
  through the SDK and through the feature server (`feast serve`, HTTP).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))
MODELS = ("stg_applications", "int_applicant_windows", "fct_application_features", "fct_applicant_history")


def _dbt(args: list[str], database: Path) -> float:
    env = {**os.environ, "PLATFORM_DUCKDB_PATH": str(database)}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--quiet"], cwd=ROOT / "dbt", env=env, check=True)
    return time.perf_counter() - start


def _model_seconds(model: str = "") -> float:
    """dbt's own time in the models of the last invocation (or in one model)."""
    results = json.loads((ROOT / "dbt" / "target" / "run_results.json").read_text())["results"]
    prefix = f"model.platform_features.{model}" if model else "model."
    return sum(r["execution_time"] for r in results if r["unique_id"].startswith(prefix))


def _compiled(model: str) -> str:
    return next((ROOT / "dbt" / "target" / "compiled").rglob(f"{model}.sql")).read_text()


def bench_dbt(database: Path, applications) -> list[dict]:
    """dbt full refresh vs the same SQL in DuckDB; then an incremental run after one more day."""
    import duckdb

    first_day = applications["application_ts"].max().normalize()
    history, new_day = applications[applications["application_ts"] < first_day], applications[applications["application_ts"] >= first_day]
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS validated")
        con.execute("CREATE OR REPLACE TABLE validated.applications AS SELECT * FROM history")
    n = len(history)
    wall = _dbt(["run", "--full-refresh"], database)
    in_models, windows_full = _model_seconds(), _model_seconds("int_applicant_windows")
    compiled = {m: _compiled(m) for m in MODELS}  # full-refresh form of the incremental model
    with duckdb.connect(str(database)) as con:
        start = time.perf_counter()
        con.execute("CREATE OR REPLACE VIEW features.stg_applications AS " + compiled["stg_applications"])
        for model in MODELS[1:]:
            con.execute(f"CREATE OR REPLACE TABLE features.{model}_direct AS " + compiled[model])
            if model == "int_applicant_windows":  # the marts read it under its own name
                con.execute("CREATE OR REPLACE TABLE features.int_applicant_windows AS "
                            "SELECT * FROM features.int_applicant_windows_direct")
        direct = time.perf_counter() - start
        con.execute("INSERT INTO validated.applications SELECT * FROM new_day")
    incremental = _dbt(["run"], database)
    incremental_models, windows_incremental = _model_seconds(), _model_seconds("int_applicant_windows")
    full_again = _dbt(["run", "--full-refresh"], database)
    return [
        {"benchmark": f"dbt run --full-refresh, {n:,} applications (CLI wall)", "value": wall, "unit": "s", "rows_per_s": n / wall},
        {"benchmark": "  of which dbt's time in the 4 models", "value": in_models, "unit": "s", "rows_per_s": n / in_models},
        {"benchmark": "same compiled SQL run directly in DuckDB", "value": direct, "unit": "s", "rows_per_s": n / direct},
        {"benchmark": "ratio dbt CLI wall / direct DuckDB", "value": wall / direct, "unit": "x"},
        {"benchmark": "ratio dbt model time / direct DuckDB", "value": in_models / direct, "unit": "x"},
        {"benchmark": f"dbt run, incremental: one new day ({len(new_day):,} rows) (CLI wall)", "value": incremental, "unit": "s"},
        {"benchmark": "  of which dbt's time in the 4 models", "value": incremental_models, "unit": "s"},
        {"benchmark": "  int_applicant_windows: incremental run vs full refresh (above)",
         "value": windows_incremental, "unit": "s", "full_refresh_s": windows_full},
        {"benchmark": f"dbt run --full-refresh, {len(applications):,} applications (CLI wall)", "value": full_again, "unit": "s"},
        {"benchmark": "  of which dbt's time in the 4 models", "value": _model_seconds(), "unit": "s"},
    ]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def bench_feast(root: Path, database: Path, lookups: int) -> list[dict]:
    """Export, apply, materialize; then online lookup latency through the SDK and the feature server."""
    import duckdb
    import requests

    from platform_assets.deploy import feature_server
    from platform_assets.features import feast_ops
    from platform_assets.features import online_load
    from platform_assets.declared import use_case
    from platform_assets.resources import FeatureStore

    loan_default = use_case("loan_default")
    FEATURE_SERVICE = loan_default.feature_service  # noqa: N806

    data_dir = root / "feast" / "data"
    with duckdb.connect(str(database), read_only=True) as con:
        counts = feast_ops.export_marts(con, data_dir, loan_default.marts)
        oldest, newest = con.execute(
            "SELECT min(event_timestamp), max(event_timestamp) FROM features.fct_application_features"
        ).fetchone()
        keys = con.execute("SELECT application_id, applicant_id FROM features.fct_application_features "
                           "USING SAMPLE 2000 ROWS (reservoir, 7)").fetchall()
    resource = FeatureStore(repo_path=str(ROOT / "feature_repo"), state_root=str(root))
    store = resource.store()
    feast_ops.apply_repo(store, ROOT / "feature_repo")
    start = time.perf_counter()
    online_load.materialize_range(store, oldest - dt.timedelta(seconds=1), newest + dt.timedelta(seconds=1))
    materialize = time.perf_counter() - start
    rows = sum(counts.values())
    entities = counts["fct_application_features"] + len({k[1] for k in keys})  # applicants: lower bound

    service = store.get_feature_service(FEATURE_SERVICE)
    rows_of = [{"application_id": a, "applicant_id": int(b)} for a, b in keys]

    def sdk(batch):
        store.get_online_features(features=service, entity_rows=batch).to_dict()

    server = feature_server.start_feature_server(
        repo_path=ROOT / "feature_repo", state_root=root, log_path=root / "fs.log", record_path=root / "fs.json",
        watch_pid=os.getpid(),
    )
    session = requests.Session()
    try:
        feature_server.wait_until_ready(server, timeout_s=120)

        def http(batch):
            payload = {"feature_service": FEATURE_SERVICE, "entities": {
                "application_id": [r["application_id"] for r in batch],
                "applicant_id": [r["applicant_id"] for r in batch]}}
            response = session.post(server.url + feature_server.ONLINE_PATH, json=payload, timeout=30)
            response.raise_for_status()
            response.json()

        results = []
        for name, fn in (("SDK", sdk), ("feature server HTTP", http)):
            for size, repeat in ((1, lookups), (100, max(lookups // 4, 20))):
                fn(rows_of[:size])  # warm up
                samples = []
                for i in range(repeat):
                    batch = [rows_of[(i * size + j) % len(rows_of)] for j in range(size)]
                    t = time.perf_counter()
                    fn(batch)
                    samples.append(time.perf_counter() - t)
                p50, p99 = _percentiles(samples)
                results.append({"benchmark": f"online lookup, {name}, batch of {size} ({repeat} calls)",
                                "value": p50, "p99": p99, "unit": "ms p50"})
    finally:
        feature_server.stop_feature_server(root / "fs.json")
    return [
        {"benchmark": f"Feast materialize {rows:,} feature rows (both marts) to SQLite", "value": materialize,
         "unit": "s", "rows_per_s": rows / materialize},
        *results,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--rows-per-day", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=400, help="single-entity calls per path")
    args = parser.parse_args()

    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

    applications = generate_applications(GeneratorConfig(
        start_date=dt.date.today() - dt.timedelta(days=args.days + 1), days=args.days,
        rows_per_day=args.rows_per_day, dirty_fraction=0.0,
    ))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        database = root / "warehouse" / "warehouse.duckdb"
        database.parent.mkdir(parents=True)
        os.environ["PLATFORM_HOME"] = str(root)
        rows = bench_dbt(database, applications) + bench_feast(root, database, args.lookups)
    print(f"{'benchmark':<78} {'value':>10} {'unit':<7} {'rows/s':>10} {'p99 ms':>8}")
    for r in rows:
        rate = f"{r['rows_per_s']:,.0f}" if "rows_per_s" in r else ""
        p99 = f"{r['p99']:.1f}" if "p99" in r else ""
        print(f"{r['benchmark']:<78} {r['value']:>10.3f} {r['unit']:<7} {rate:>10} {p99:>8}")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "args": vars(args), "applications": len(applications), "results": rows}
    (OUT / "features.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()

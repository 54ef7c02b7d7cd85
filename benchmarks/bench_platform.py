"""Benchmarks of the platform's foundation: code-location load, data generation, validation, training.

Run: `make benchmark` (or `.venv/bin/python benchmarks/bench_platform.py [--quick]`).
Prints a table and writes benchmarks/out/platform.json. Stage functions run
without Dagster, so these are the costs of the logic itself.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


def _timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_load(repeat: int) -> list[dict]:
    """Wall time of `python -c "import platform_assets.definitions"`, and the import alone."""
    walls, imports = [], []
    code = "import time; t = time.perf_counter(); import platform_assets.definitions; print(time.perf_counter() - t)"
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - start)
        imports.append(float(out.stdout.strip().splitlines()[-1]))
    return [
        {"benchmark": "code location: python -c import (wall, median)", "value": statistics.median(walls), "unit": "s"},
        {"benchmark": "code location: import only (median)", "value": statistics.median(imports), "unit": "s"},
    ]


def bench_ingest_and_validate(sizes: list[int]) -> list[dict]:
    """Generate, write 100 daily landing files, read them back whole, validate and mask."""
    import tempfile

    from platform_assets.declared import use_case
    from platform_assets.ingest.landing import list_landing_files, read_landing
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications, write_landing_files
    from platform_assets.validate.duplicates import split_batch
    from platform_assets.validate.pii import mask_pii

    source = use_case("loan_default").source
    rows = []
    for size in sizes:
        start = time.perf_counter()
        # Ends yesterday: no application is dated in the future (which validation would quarantine).
        first_day = dt.date.today() - dt.timedelta(days=100)
        df = generate_applications(GeneratorConfig(start_date=first_day, days=100, rows_per_day=size // 100))
        gen = time.perf_counter() - start
        for file_format in ("parquet", "csv"):
            with tempfile.TemporaryDirectory() as tmp:
                write_landing_files(df, Path(tmp), file_format)
                start = time.perf_counter()
                raw, accepted, rejected = read_landing(list_landing_files(tmp), source)
                read = time.perf_counter() - start
            assert len(raw) == len(df) and not rejected
            start = time.perf_counter()
            result = split_batch(raw, source)
            val = time.perf_counter() - start
            start = time.perf_counter()
            mask_pii(result.valid, source.pii, "bench-hmac-key-0123456789")
            mask = time.perf_counter() - start
            assert len(result.valid) + len(result.quarantined) == len(df)
            n = len(df)
            rows += [
                {"benchmark": f"ingest {n:,} rows from 100 {file_format} files", "value": read, "unit": "s",
                 "rows_per_s": n / read},
                {"benchmark": f"validate {n:,} rows from {file_format} (parse + pandera + duplicate policy)",
                 "value": val, "unit": "s", "rows_per_s": n / val},
                {"benchmark": f"mask PII of {len(result.valid):,} rows", "value": mask, "unit": "s",
                 "rows_per_s": len(result.valid) / mask},
            ]
        rows.insert(len(rows) - 6, {"benchmark": f"generate {len(df):,} rows", "value": gen, "unit": "s",
                                    "rows_per_s": len(df) / gen})
    return rows


def bench_training(size: int) -> list[dict]:
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
    from platform_assets.train.trainer import TrainParams, train_model

    df = generate_applications(GeneratorConfig(days=100, rows_per_day=size // 100, dirty_fraction=0))
    features = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years",
                "num_open_accounts", "num_delinquencies", "debt_to_income", "region"]
    n = len(df)
    train, val = df.iloc[: int(0.8 * n)], df.iloc[int(0.8 * n):]
    params = TrainParams(max_epochs=5, patience=100)
    start = time.perf_counter()
    result = train_model(train, val, features, "is_default", params)
    wall = time.perf_counter() - start
    epochs = len(result.history)
    return [{"benchmark": f"train MLP on {len(train):,} rows x {epochs} epochs", "value": wall, "unit": "s",
             "rows_per_s": len(train) * epochs / wall}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [100_000, 1_000_000]
    rows = bench_load(2 if args.quick else 5)
    rows += bench_ingest_and_validate(sizes)
    rows += bench_training(10_000 if args.quick else 100_000)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    print(f"{'benchmark':60} {'value':>10} {'unit':>5} {'rows/s':>12}")
    for row in rows:
        rate = f"{row['rows_per_s']:,.0f}" if "rows_per_s" in row else ""
        print(f"{row['benchmark']:60} {row['value']:>10.2f} {row['unit']:>5} {rate:>12}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "platform.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    print(f"wrote {OUT / 'platform.json'}")


if __name__ == "__main__":
    main()

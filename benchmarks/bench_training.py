"""Training throughput of the tabular network: samples/s and wall time on 100k and 1M rows.

Run: `.venv/bin/python benchmarks/bench_training.py` (add `--quick` for a smoke run).
Prints a table and writes benchmarks/out/training.json. One candidate, a fixed
number of epochs (early stopping off), the trainer called without Dagster or
MLflow: the cost of the training itself, preprocessing included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

FEATURES = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years",
            "num_open_accounts", "num_delinquencies", "debt_to_income", "region"]


def bench(rows: int, epochs: int, batch_sizes: list[int], threads: list[int]) -> list[dict]:
    """Trains one (64, 32) network per batch size and thread count on ``rows`` generated rows (80% train)."""
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
    from platform_assets.train.trainer import TrainParams, train_model

    df = generate_applications(GeneratorConfig(days=100, rows_per_day=rows // 100, dirty_fraction=0))
    n = len(df)
    train, validation = df.iloc[: int(0.8 * n)], df.iloc[int(0.8 * n):]
    # Warm-up: torch's first operations pay one-off costs (about 1 s) that are not training.
    train_model(train.head(1000), validation.head(200), FEATURES, "is_default", TrainParams(max_epochs=1))
    results = []
    for batch_size in batch_sizes:
        for num_threads in threads:
            params = TrainParams(max_epochs=epochs, patience=epochs + 1, batch_size=batch_size, num_threads=num_threads)
            start = time.perf_counter()
            result = train_model(train, validation, FEATURES, "is_default", params)
            wall = time.perf_counter() - start
            run = len(result.history)
            results.append({
                "rows": n, "train_rows": len(train), "epochs": run, "batch_size": batch_size, "threads": num_threads,
                "wall_s": wall, "samples_per_s": len(train) * run / wall,
                "best_val_auc": result.best_val_auc,
            })
    return results


def bench_search(rows: int) -> dict:
    """The model asset's default candidate search (three candidates, early stopping) on ``rows`` rows."""
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
    from platform_assets.defs.train.assets import TrainConfig, train_params
    from platform_assets.train.trainer import search

    df = generate_applications(GeneratorConfig(days=100, rows_per_day=rows // 100, dirty_fraction=0))
    n = len(df)
    train, validation = df.iloc[: int(0.7 * n)], df.iloc[int(0.7 * n): int(0.85 * n)]
    start = time.perf_counter()
    best, results = search(train, validation, FEATURES, "is_default", train_params(TrainConfig()))
    wall = time.perf_counter() - start
    epochs = sum(len(r.history) for r in results)
    return {"rows": n, "train_rows": len(train), "candidates": len(results), "epochs_total": epochs,
            "wall_s": wall, "samples_per_s": len(train) * epochs / wall, "best_val_auc": results[best].best_val_auc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k rows, 2 epochs: a smoke run")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--search-rows", type=int, default=100_000,
                        help="rows for the default three-candidate search (0: skip)")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [100_000, 1_000_000]
    epochs = 2 if args.quick else args.epochs
    rows = [r for size in sizes for r in bench(size, epochs, args.batch_sizes, args.threads)]
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    import torch

    machine["torch"] = torch.__version__
    header = f"{'rows':>10} {'train rows':>10} {'epochs':>6} {'batch':>6} {'threads':>7} {'wall s':>8} {'samples/s':>11} {'val AUC':>8}"
    print(header)
    for r in rows:
        print(f"{r['rows']:>10,} {r['train_rows']:>10,} {r['epochs']:>6} {r['batch_size']:>6} {r['threads']:>7} "
              f"{r['wall_s']:>8.2f} {r['samples_per_s']:>11,.0f} {r['best_val_auc']:>8.4f}")
    searched = bench_search(10_000 if args.quick else args.search_rows) if args.search_rows else None
    if searched:
        print(f"default search: {searched['candidates']} candidates on {searched['train_rows']:,} train rows, "
              f"{searched['epochs_total']} epochs in all, {searched['wall_s']:.1f} s "
              f"({searched['samples_per_s']:,.0f} samples/s), best val AUC {searched['best_val_auc']:.4f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "training.json").write_text(
        json.dumps({"machine": machine, "results": rows, "default_search": searched}, indent=2)
    )
    print(f"wrote {OUT / 'training.json'}")


if __name__ == "__main__":
    main()

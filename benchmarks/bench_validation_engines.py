"""Validation engines at 100k and 1M rows: the reference (pandera on pandas) against the fast engine.

Both split the same generated loan applications (0.5% dirty rows, plus the
rows the parser refuses) into valid and quarantined rows with reasons, from
Parquet (typed cells) and from CSV (every cell text, as the landing reader
gives it). Reading the file is not timed. Each figure is the best of
``--repeat`` runs; the outcomes of both engines are compared (valid rows,
quarantined rows with their reasons, counts per check). ``custom checks s``
(best of ``--repeat`` runs too) is the part of the fast engine's time spent
in the schema's own check functions (``valid_email`` and
``valid_phone_number``, which match every cell with RE2 over Arrow strings
where RE2 and Python's ``re`` agree: ``platform_assets/validate/patterns.py``).

    .venv/bin/python benchmarks/bench_validation_engines.py [--sizes 100000 1000000] [--repeat 3]

Prints a table and writes ``benchmarks/out/validation_engines.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "out"


def _best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def _same(fast, slow) -> bool:
    try:
        pd.testing.assert_frame_equal(fast.valid, slow.valid, check_exact=True)
        pd.testing.assert_frame_equal(fast.quarantined, slow.quarantined, check_exact=True)
    except AssertionError:
        return False
    return list(fast.failure_counts.items()) == list(slow.failure_counts.items())


def _custom_check_seconds(df, schema, personal) -> float:
    """Seconds the fast engine spends in the schema's custom (not built-in) check functions in one run."""
    from platform_assets.validate import schema_checks

    spent, run_check = [0.0], schema_checks.run_check

    def timed(check, frame, key, gaps):
        start = time.perf_counter()
        try:
            return run_check(check, frame, key, gaps)
        finally:
            if not check.is_builtin_check(getattr(check._check_fn, "__name__", "")):
                spent[0] += time.perf_counter() - start

    schema_checks.run_check = timed
    try:
        from platform_assets.validate.rules import split_valid_rows

        split_valid_rows(df, schema, personal)
    finally:
        schema_checks.run_check = run_check
    return spent[0]


def _inputs(size: int, folder: Path) -> dict[str, pd.DataFrame]:
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

    # Ends yesterday: no application is dated in the future (which validation would quarantine).
    first_day = dt.date.today() - dt.timedelta(days=101)
    raw = generate_applications(GeneratorConfig(start_date=first_day, days=100, rows_per_day=size // 100))
    raw.to_parquet(folder / "rows.parquet", index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    raw.to_csv(folder / "rows.csv", index=False)
    return {"parquet": pd.read_parquet(folder / "rows.parquet"),
            "csv": pd.read_csv(folder / "rows.csv", dtype=str, keep_default_na=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from platform_assets.declared import use_case
    from platform_assets.validate import reference, rules

    source = use_case("loan_default").source
    schema, personal = source.schema_model(), source.pii
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for form, df in _inputs(size, Path(tmp)).items():
                rules.split_valid_rows(df.head(1000), schema, personal)  # imports and caches out of the timing
                slow_s, slow = _best(lambda: reference.split_valid_rows(df, schema, personal), args.repeat)
                fast_s, fast = _best(lambda: rules.split_valid_rows(df, schema, personal), args.repeat)
                rows.append({
                    "input": form, "rows": len(df), "reference_s": round(slow_s, 3), "fast_s": round(fast_s, 3),
                    "speedup": round(slow_s / fast_s, 1), "fast_rows_per_s": round(len(df) / fast_s),
                    "custom_checks_s": round(min(_custom_check_seconds(df, schema, personal)
                                                 for _ in range(args.repeat)), 3),
                    "quarantined": len(fast.quarantined), "identical": _same(fast, slow),
                })
    print(f"{'input':8} {'rows':>10} {'reference s':>12} {'fast s':>8} {'speedup':>8} {'fast rows/s':>12} "
          f"{'custom checks s':>16} {'quarantined':>12} {'identical':>10}")
    for r in rows:
        print(f"{r['input']:8} {r['rows']:>10,} {r['reference_s']:>12.2f} {r['fast_s']:>8.2f} {r['speedup']:>7.1f}x "
              f"{r['fast_rows_per_s']:>12,} {r['custom_checks_s']:>16.2f} {r['quarantined']:>12,} {str(r['identical']):>10}")
    OUT.mkdir(exist_ok=True)
    load = os.getloadavg()
    report = {"repeat": args.repeat, "cpus": os.cpu_count(), "load_average_after": [round(v, 2) for v in load],
              "results": rows}
    (OUT / "validation_engines.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""`make bench`: the whole graph at 100k, 1M and 10M rows, each stage's wall time, rows/s and peak memory.

For each size, on a state root of its own: generate the landing files (loan default, 100 days), then the
commands of `make materialize` (the landed days in one run, features to serving, the newest day's traffic,
its inference log, the drift job). Two kinds of figures:

- per command: wall seconds and the peak RSS of its whole process tree (sampled every 0.5 s), with and without
  the serving processes a deployment leaves running (supervisord and its router and servers);
- per stage (each Dagster step): the cost every materialization records (``cost/wall_s``, ``cost/cpu_s``,
  ``cost/peak_rss_mb``, see ``platform_assets/cost.py``) and the rows it wrote (the largest
  ``dagster/row_count`` of the step), hence rows/s.

Writes ``benchmarks/out/bench.json`` and a Markdown section (command, commit, machine, date) that it prints
and, with ``--record``, appends to ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/run.py --sizes 100k 1M 10M --work /tmp/bench [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import bench_overhead
from bench_scale import run_measured
from state_root import BIN, ROOT, fresh_state_root, stop_servers

OUT = ROOT / "benchmarks" / "out"
DAYS = 100
SIZES = {"100k": 1_000, "1M": 10_000, "10M": 100_000}  # rows per day, over DAYS days
USE_CASE = "loan_default"


def stage_costs(dagster_home: Path) -> list[dict]:
    """Each run's steps with the cost their materializations recorded, in run order (a fresh process)."""
    code = f"""
import json, dagster as dg
from platform_assets.cost import COST_KEYS
instance = dg.DagsterInstance.get()
rows = []
for run in reversed(instance.get_runs()):
    steps = {{}}
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = record.dagster_event
        metadata = {{k: getattr(v, "value", v) for k, v in event.event_specific_data.materialization.metadata.items()}}
        if not all(k in metadata for k in COST_KEYS):
            continue
        step = steps.setdefault(event.step_key, {{"job": run.job_name, "step": event.step_key, "rows": 0,
                                                 "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0}})
        step["rows"] = max(step["rows"], int(metadata.get("dagster/row_count") or 0))
        step["wall_s"] = max(step["wall_s"], metadata["cost/wall_s"])
        step["cpu_s"] = max(step["cpu_s"], metadata["cost/cpu_s"])
        step["peak_rss_mb"] = max(step["peak_rss_mb"], metadata["cost/peak_rss_mb"])
    rows += list(steps.values())
print(json.dumps(rows))
"""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    done = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    for step in steps:
        step["rows_per_s"] = round(step["rows"] / step["wall_s"]) if step["rows"] and step["wall_s"] else None
    return steps


def bench_size(label: str, rows_per_day: int, work: Path, port: int, overhead: bool = False) -> dict:
    """The whole graph on ``DAYS`` x ``rows_per_day`` rows; its commands' and stages' figures (and, with
    ``overhead``, the same stage functions from a plain script: ``bench_overhead.py``)."""
    home = work / label
    shutil.rmtree(home, ignore_errors=True)
    env = fresh_state_root(home, SERVING_PORT=str(port))
    py = str(BIN / "python")

    def landing_days(*extra: str) -> str:
        return subprocess.run([py, "-m", "platform_assets", "landing-days", "--use-case", USE_CASE, *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()

    print(f"\n## {label}: {DAYS} days x {rows_per_day:,} rows under {home}", flush=True)
    commands = [run_measured("generate", [py, "-m", "platform_assets", "generate", "--use-case", USE_CASE,
                                          "--days", str(DAYS), "--rows-per-day", str(rows_per_day)], env)]
    launch = [py, "-m", "platform_assets.launch", "--job"]
    days = landing_days()
    plan = [
        ("landed days (raw, validated)", lambda: [*launch, f"{USE_CASE}__ingest_days", "--partition-range", days]),
        ("features_to_serving", lambda: [*launch, f"{USE_CASE}__features_to_serving"]),
        ("traffic (newest day)", lambda: [py, "-m", "platform_assets", "traffic", "--use-case", USE_CASE]),
        ("inference_log (newest day)", lambda: [*launch, f"{USE_CASE}__inference_days", "--partition",
                                                landing_days("--last")]),
        ("drift job", lambda: [*launch, f"{USE_CASE}__drift"]),
    ]
    try:
        for name, argv in plan:
            commands.append(run_measured(name, argv(), env))
            if commands[-1]["rc"] != 0:
                break
    finally:
        stop_servers(env)
    compared = None
    if overhead and all(c["rc"] == 0 for c in commands):
        plain = bench_overhead.plain_side(label, rows_per_day, DAYS, work, port, USE_CASE, days)
        compared = bench_overhead.compare(commands, bench_overhead.dagster_steps(home / "dagster_home", USE_CASE), plain)
    for command in commands:
        command.pop("last_line", None)
    return {"label": label, "overhead": compared, "rows": DAYS * rows_per_day, "days": DAYS, "rows_per_day": rows_per_day,
            "completed": all(c["rc"] == 0 for c in commands) and len(commands) == len(plan) + 1,
            "wall_s": round(sum(c["wall_s"] for c in commands), 1),
            "peak_tree_rss_gb": max(c["peak_tree_rss_gb"] for c in commands),
            "peak_pipeline_rss_gb": max(c["peak_pipeline_rss_gb"] for c in commands),
            "commands": commands, "stages": stage_costs(home / "dagster_home")}


def markdown(report: dict) -> str:
    """The report as a RESULTS.md section: the sizes side by side, then each size's stages."""
    lines = [f"## `make bench` (issue 24), {report['date']}", "",
             f"Command: `{report['command']}`; commit {report['commit']}; machine: {report['machine']}.", "",
             "| rows | completed | wall s | peak RSS of the process tree (GB) | the same without serving (GB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {s['label']} | {'yes' if s['completed'] else 'NO'} | {s['wall_s']} | {s['peak_tree_rss_gb']} | "
              f"{s['peak_pipeline_rss_gb']} |" for s in report["sizes"]]
    done = [s for s in report["sizes"] if s["completed"]]
    for smaller, larger in zip(done, done[1:]):
        lines += ["", f"Wall time from {smaller['label']} to {larger['label']} ({larger['rows'] / smaller['rows']:g}x the "
                      f"rows): {larger['wall_s'] / smaller['wall_s']:.2f}x."]
    for size in report["sizes"]:
        lines += ["", f"### {size['label']} ({size['days']} days x {size['rows_per_day']:,} rows)", "",
                  "| command | wall s | peak tree RSS (GB) | without serving (GB) |", "|---|---|---|---|"]
        lines += [f"| {c['command']} | {c['wall_s']} | {c['peak_tree_rss_gb']} | {c['peak_pipeline_rss_gb']} |"
                  for c in size["commands"]]
        lines += ["", "| job | step | rows | wall s | CPU s | rows/s | peak RSS (MB) |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['job']} | {s['step']} | {s['rows']:,} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | "
                  f"{s['rows_per_s'] or ''} | {s['peak_rss_mb']:.0f} |" for s in size["stages"]]
        if size.get("overhead"):
            lines += bench_overhead.markdown(size["label"], size["overhead"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/platform-bench"), help="state roots go here")
    parser.add_argument("--port", type=int, default=9300, help="the model server's port (beside a demo's)")
    parser.add_argument("--record", action="store_true", help="append the Markdown section to RESULTS.md")
    parser.add_argument("--overhead-size", default="1M", help="the size whose stage functions also run from a "
                        "plain script (orchestration overhead); 'none' to skip")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    report = {
        "date": dt.date.today().isoformat(), "commit": commit or "unknown",
        "command": "make bench" if os.environ.get("MAKELEVEL") else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                   f"Python {platform.python_version()}",
        "sizes": [bench_size(label, SIZES[label], args.work, args.port, overhead=label == args.overhead_size)
                  for label in args.sizes],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(report, indent=2))
    section = markdown(report)
    print("\n" + section)
    if args.record:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as results:
            results.write("\n" + section)


if __name__ == "__main__":
    main()

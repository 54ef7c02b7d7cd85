"""The whole graph at a user's scale: `make data materialize` on N days x M rows, timed and measured.

Run: `.venv/bin/python benchmarks/bench_scale.py --days 100 --rows-per-day 10000 --home /tmp/scale`
(about 5 minutes on 2 cores for 1M rows). It runs the same commands as
`make data materialize` (generate, landed days, features_to_serving, traffic for the
newest day, its inference log, the drift job) on a state root of its own, samples
the memory of every process it started (every 0.5 s, whole process tree), and
reads each Dagster step's duration from the run storage afterwards. Prints a
table and writes benchmarks/out/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import psutil
from state_root import BIN, ROOT, fresh_state_root, stop_servers

OUT = ROOT / "benchmarks" / "out"


def _tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """(sum of RSS over the tree, largest single RSS, sum without the serving processes) in bytes.

    The serving processes are the supervisord a deployment starts and everything under it (router, model
    servers, feature server): they stay up after the run, and their size does not depend on the data.
    """
    total = largest = serving = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
            if "supervisord" in " ".join(p.cmdline()):
                serving += rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest, total - serving


def run_measured(name: str, argv: list[str], env: dict) -> dict:
    """Runs one command, sampling its process tree's memory; fails loudly if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = {"tree": 0, "process": 0, "pipeline": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total, largest, pipeline = _tree_rss(ps)
            peak["tree"] = max(peak["tree"], total)
            peak["process"] = max(peak["process"], largest)
            peak["pipeline"] = max(peak["pipeline"], pipeline)
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    rc = proc.wait()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    row = {"command": name, "rc": rc, "wall_s": round(wall, 1),
           "peak_tree_rss_gb": round(peak["tree"] / 2**30, 2), "peak_process_rss_gb": round(peak["process"] / 2**30, 2),
           "peak_pipeline_rss_gb": round(peak["pipeline"] / 2**30, 2),
           "last_line": output.strip().splitlines()[-1] if output.strip() else ""}
    print(f"{name:<34} rc {rc}  {wall:8.1f} s  peak tree {row['peak_tree_rss_gb']:5.2f} GB  "
          f"largest process {row['peak_process_rss_gb']:5.2f} GB  without serving {row['peak_pipeline_rss_gb']:5.2f} GB",
          flush=True)
    if rc != 0:
        print(output[-4000:])
        row["output_tail"] = output[-4000:]
    return row


def step_durations(dagster_home: Path) -> list[dict]:
    """Each run's steps and their durations, from the run storage."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    rows = []
    for run in reversed(instance.get_runs()):
        for stat in instance.get_run_step_stats(run.run_id):
            if stat.start_time and stat.end_time:
                rows.append({"job": run.job_name, "step": stat.step_key, "status": str(stat.status.value),
                             "seconds": round(stat.end_time - stat.start_time, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--rows-per-day", type=int, default=10_000)
    parser.add_argument("--home", type=Path, required=True, help="an empty state root for this run")
    parser.add_argument("--port", type=int, default=9300, help="the model server's port (beside a demo's)")
    args = parser.parse_args()
    env = fresh_state_root(args.home, SERVING_PORT=str(args.port))
    dagster_home = Path(env["DAGSTER_HOME"])
    py = str(BIN / "python")

    def landing_days(*extra: str) -> str:
        return subprocess.run([py, "-m", "platform_assets", "landing-days", *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    # The loan-default use case at scale (the benchmark of issue 9's 1M rows).
    use_case = "loan_default"
    rows = [run_measured("generate", [py, "-m", "platform_assets", "generate", "--use-case", use_case,
                                      "--days", str(args.days), "--rows-per-day", str(args.rows_per_day)], env)]
    launch = [py, "-m", "platform_assets.launch"]
    steps = [
        ("landed days (raw, validated)", [*launch, "--job", f"{use_case}__ingest_days",
                                          "--partition-range", landing_days("--use-case", use_case)]),
        ("features_to_serving", [*launch, "--job", f"{use_case}__features_to_serving"]),
        ("traffic (newest day)", [py, "-m", "platform_assets", "traffic", "--use-case", use_case]),
        ("inference_log (newest day)", [*launch, "--job", f"{use_case}__inference_days",
                                        "--partition", landing_days("--use-case", use_case, "--last")]),
        ("drift job", [*launch, "--job", f"{use_case}__drift"]),
    ]
    for name, argv in steps:
        rows.append(run_measured(name, argv, env))
        if rows[-1]["rc"] != 0:
            break
    stop_servers(env)
    steps_table = step_durations(dagster_home)
    print()
    print(f"{'job':<22} {'step':<44} {'status':<8} seconds")
    for s in steps_table:
        print(f"{s['job']:<22} {s['step']:<44} {s['status']:<8} {s['seconds']:8.1f}")
    total = sum(r["wall_s"] for r in rows)
    print(f"\nin all {total:.0f} s; peak tree RSS {max(r['peak_tree_rss_gb'] for r in rows):.2f} GB")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"days": args.days, "rows_per_day": args.rows_per_day, "machine": {
        "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version()}, "commands": rows, "steps": steps_table, "total_s": round(total, 1)}
    (OUT / "scale.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Loop latency under the real daemon: drifted day landed -> new version serving.

Run: `.venv/bin/python benchmarks/bench_loop_latency.py --interval 30 --home /tmp/loop-30`
(and again with `--interval 5`). It starts `dagster-daemon run` on a state root of
its own with the platform's tick interval (``PLATFORM_AUTOMATION_INTERVAL_S``), runs
`python -m platform_assets loop --daemon` against it (the daemon ingests the
history, trains and deploys a first model, then reacts to each live day), and
reads the latencies the loop measured (``loop/timeline.json``). Prints a table and
writes benchmarks/out/loop_latency_<interval>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from state_root import BIN, ROOT, fresh_state_root, stop_servers

OUT = ROOT / "benchmarks" / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=30, help="PLATFORM_AUTOMATION_INTERVAL_S for every sensor")
    parser.add_argument("--home", type=Path, required=True, help="an empty state root for this run")
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--live-days", type=int, default=8)
    parser.add_argument("--drift-day", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=600)
    parser.add_argument("--port", type=int, default=9400)
    args = parser.parse_args()
    start = dt.date.today() - dt.timedelta(days=args.history_days + args.live_days + 1)
    env = fresh_state_root(
        args.home, PLATFORM_PARTITIONS_START=start.isoformat(), PLATFORM_AUTOMATION_INTERVAL_S=str(args.interval),
        SERVING_PORT=str(args.port), PLATFORM_RETRAIN_MIN_ROWS_SINCE_DRIFT=str(2 * args.rows_per_day),
        # As `make loop`: retraining on label counts waits for more labels than the loop sends.
        PLATFORM_RETRAIN_MIN_NEW_LABELS=str(10 * args.rows_per_day * args.live_days))
    home = Path(env["PLATFORM_HOME"])
    daemon_log = open(home / "daemon.log", "w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                              stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.perf_counter()
    try:
        loop = subprocess.run(
            [str(BIN / "python"), "-m", "platform_assets", "loop", "--use-case", "loan_default", "--daemon", "--history-days", str(args.history_days),
             "--live-days", str(args.live_days), "--drift-day", str(args.drift_day),
             "--rows-per-day", str(args.rows_per_day)], cwd=ROOT, env=env, text=True)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        stop_servers(env)
    wall = time.perf_counter() - started
    timeline = json.loads((home / "loop" / "timeline.json").read_text()) if (home / "loop" / "timeline.json").exists() else {}
    latency = timeline.get("latency") or {}
    row = {"interval_s": args.interval, "loop_rc": loop.returncode, "wall_s": round(wall, 1), **latency,
           "days": [{k: d.get(k) for k in ("day", "sent", "answered", "serving_version", "roc_auc", "retrains_requested")}
                    for d in timeline.get("days", [])]}
    print(f"\ninterval {args.interval} s: loop rc {loop.returncode}, {wall:.0f} s in all")
    for key in ("drift_landed_to_serving_s", "trigger_landed_to_serving_s", "retrain_run_s"):
        value = latency.get(key)
        print(f"  {key:<32} {value:8.1f} s" if value is not None else f"  {key:<32} -")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"loop_latency_{args.interval}.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()

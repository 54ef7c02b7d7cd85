"""Orchestration overhead: the Dagster runs of a size against the same stage functions called from a plain script.

``make bench`` runs it at 1M rows, after the size's Dagster runs (``run.py``): on a second fresh state root with
the same generated days, ``plain_stages.py`` calls the asset bodies and checks of ``ingest_days`` and
``features_to_serving`` in the jobs' order, in one process per job. Compared:

- per stage: the Dagster step's duration (its start to its end in the run storage: the body, its resources,
  its events) against the plain call of the same body (or check);
- in all: the two commands' wall seconds (process start to exit: imports, the code location, the runs, every
  step) against the plain script's two processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench_scale import run_measured
from state_root import BIN, ROOT, fresh_state_root, stop_servers

JOBS = ("ingest_days", "features_to_serving")


def dagster_steps(dagster_home: Path, use_case: str) -> dict[str, float]:
    """Each step of the jobs' latest runs and its duration in seconds (a fresh process reads the run storage)."""
    code = f"""
import json, dagster as dg
instance = dg.DagsterInstance.get()
steps = {{}}
for job in {[f"{use_case}__{j}" for j in JOBS]!r}:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
    for stat in instance.get_run_step_stats(runs[0].run_id) if runs else []:
        if stat.start_time and stat.end_time:
            steps[stat.step_key] = stat.end_time - stat.start_time
print(json.dumps(steps))
"""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    done = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_side(label: str, rows_per_day: int, days: int, work: Path, port: int, use_case: str,
               partition_range: str) -> dict:
    """Generates the same days on a fresh state root and runs the jobs' stage functions from the plain script."""
    home = work / f"{label}-plain"
    shutil.rmtree(home, ignore_errors=True)
    env = fresh_state_root(home, SERVING_PORT=str(port))
    py = str(BIN / "python")
    commands = [run_measured("plain: generate", [py, "-m", "platform_assets", "generate", "--use-case", use_case,
                                                 "--days", str(days), "--rows-per-day", str(rows_per_day)], env)]
    script = str(ROOT / "benchmarks" / "plain_stages.py")
    stages: dict[str, float] = {}
    try:
        for job in JOBS:
            argv = [py, script, "--job", f"{use_case}__{job}"]
            if job == "ingest_days":
                argv += ["--partition-range", partition_range]
            commands.append(run_measured(f"plain: {job}", argv, env))
            if commands[-1]["rc"] != 0:
                raise SystemExit(f"the plain script failed on {job}")
            stages.update(json.loads(commands[-1]["last_line"])["stages"])
    finally:
        stop_servers(env)
    return {"commands": commands, "stages": stages}


def compare(dagster_commands: list[dict], dagster_steps_s: dict[str, float], plain: dict) -> dict:
    """Per stage and in all: Dagster's seconds, the plain script's, and their ratio."""
    names = {"landed days (raw, validated)": "plain: ingest_days", "features_to_serving": "plain: features_to_serving"}
    dagster_s = sum(c["wall_s"] for c in dagster_commands if c["command"] in names)
    plain_s = sum(c["wall_s"] for c in plain["commands"] if c["command"] in names.values())
    stages = [{"stage": step, "dagster_s": round(seconds, 2), "plain_s": plain["stages"].get(step),
               "ratio": round(seconds / plain["stages"][step], 2) if plain["stages"].get(step) else None}
              for step, seconds in dagster_steps_s.items()]
    return {"dagster_s": round(dagster_s, 1), "plain_s": round(plain_s, 1),
            "ratio": round(dagster_s / plain_s, 3) if plain_s else None,
            "overhead_pct": round(100 * (dagster_s / plain_s - 1), 1) if plain_s else None,
            "stages": stages, "plain_commands": plain["commands"]}


def markdown(label: str, result: dict) -> list[str]:
    lines = ["", f"### Orchestration overhead at {label}", "",
             f"The two jobs as Dagster runs took {result['dagster_s']} s; their stage functions called from a plain "
             f"script (`benchmarks/plain_stages.py`) took {result['plain_s']} s: ratio {result['ratio']}, "
             f"overhead {result['overhead_pct']} %.", "",
             "| stage (Dagster step) | Dagster s | plain s | ratio |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['dagster_s']} | {s['plain_s'] if s['plain_s'] is not None else 'not run'} | "
              f"{s['ratio'] if s['ratio'] is not None else ''} |" for s in result["stages"]]
    return lines

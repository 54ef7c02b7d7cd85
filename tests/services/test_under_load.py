"""Runs side by side on the prod profile: 4 ingest runs of different days and a retrain, while 8 callers are
served. Every run succeeds, rows are conserved, nothing waits on a lock and no request fails.

Runs after test_prod_profile.py (same session's graph), whose counts it would change.
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

from tests.conftest import PROJECT_ROOT
from tests.services.conftest import DAYS, USE_CASE, run

LOCK_ERRORS = re.compile(r"database is locked|Could not set lock|stayed locked|lock on file", re.IGNORECASE)


def _lake(graph):
    from platform_assets.warehouse import Warehouse

    return Warehouse(catalog=graph["env"]["PLATFORM_WAREHOUSE_URL"],
                     data_path=str(graph["root"] / "shared" / "warehouse" / "lake"))


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
        assert process.returncode == 0, f"{' '.join(command[3:])} failed:\n{output[-4000:]}"
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

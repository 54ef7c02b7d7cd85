"""Two runs that write the warehouse at once, outside the queue, both succeed in turn; no row is lost."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from platform_assets import settings
from tests.conftest import PROJECT_ROOT, write_sample_landing

BIN = Path(sys.executable).parent
DAYS = ("2026-09-01", "2026-09-02")


def test_two_cli_runs_meeting_a_held_lock_wait_and_both_succeed(tmp_path):
    root = Path(os.environ["PLATFORM_HOME"])
    rows = write_sample_landing(root, days=len(DAYS), rows_per_day=200)
    warehouse = settings.paths(root).warehouse
    warehouse.parent.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml")
    dg.DagsterInstance.get().dispose()  # the storage exists before two processes open it
    # A third process writing (another run, or the sensor's read) holds the file when both runs start.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(warehouse)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    logs = [tmp_path / f"{day}.log" for day in DAYS]
    runs = [
        subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "platform_assets.definitions",
             "--select", "loan_default/raw/applications,loan_default/validated/applications,loan_default/quarantine/applications", "--partition", day],
            cwd=PROJECT_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        for day, log in zip(DAYS, logs)
    ]
    try:
        deadline = time.monotonic() + 90
        while not all("is locked by another process; waiting" in log.read_text() for log in logs):
            assert all(run.poll() is None for run in runs), "a run ended instead of waiting for the lock"
            assert time.monotonic() < deadline, "the runs never reached the warehouse"
            time.sleep(0.5)
        holder.stdin.close()  # the other writer finishes
        codes = [run.wait(timeout=180) for run in runs]
    finally:
        for process in (holder, *runs):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        assert count("raw.applications") == rows
        assert count("validated.applications") + count("quarantine.applications") == rows
        assert count("raw.applications_landing_files") == len(DAYS)

"""The run queue under the daemon, with the shipped dagster.yaml: a killed run does not block it for ever,
and runs that hold the warehouse pool go one at a time."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from platform_assets.concurrency import ensure_pool_limit
from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent
JOBS = Path(__file__).resolve().parent / "run_queue_jobs.py"


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def processes():
    """Processes started by a test, each in its own session; all killed (process group) at teardown."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_killed_run_is_marked_failed_and_queued_runs_start_one_at_a_time(tmp_path, processes):
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")  # the shipped file, as `make` installs it
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_file: {JOBS}\n")
    (tmp_path / "long.yaml").write_text("ops: {hold_warehouse: {config: {seconds: 600}}}\n")
    (tmp_path / "short.yaml").write_text("ops: {hold_warehouse: {config: {seconds: 2}}}\n")
    log = (tmp_path / "processes.log").open("w")

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        processes.append(process)
        return process

    instance = dg.DagsterInstance.get()  # creates the SQLite storage once, before the processes share it
    ensure_pool_limit(instance)  # as the landing sensor does before it asks for runs
    daemon = start("dagster-daemon", "run", "-w", str(workspace))
    # A run outside the queue, as `make materialize` starts one: it runs in the CLI's own process.
    cli = start("dagster", "job", "execute", "-f", str(JOBS), "-j", "warehouse_job", "-c", str(tmp_path / "long.yaml"))
    try:
        killed = _wait_for(
            lambda: next(iter(instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))), None),
            60, "the CLI run to start",
        )
        launches = [start("dagster", "job", "launch", "-w", str(workspace), "-j", "warehouse_job",
                          "-c", str(tmp_path / "short.yaml")) for _ in range(2)]
        assert [p.wait(timeout=60) for p in launches] == [0, 0]
        queued = [r.run_id for r in instance.get_runs() if r.run_id != killed.run_id]
        assert len(queued) == 2
        # While the CLI run lives it holds the warehouse pool: the queued runs wait.
        assert all(instance.get_run_by_id(i).status == dg.DagsterRunStatus.QUEUED for i in queued)

        os.killpg(cli.pid, signal.SIGKILL)  # kill -9 of the run's process
        cli.wait()
        _wait_for(lambda: all(instance.get_run_by_id(i).status == dg.DagsterRunStatus.SUCCESS for i in queued),
                  75, "the queued runs to succeed after the killed run")
        assert daemon.poll() is None, "the daemon kept running"
    finally:
        instance.dispose()
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "run worker process" in failure[-1].message
    # max_concurrent_runs is 2, yet the pool `warehouse` (limit 1) kept them one after the other.
    first, second = sorted(instance.get_run_records(dg.RunsFilter(run_ids=queued)), key=lambda r: r.start_time)
    assert second.start_time >= first.end_time


def test_exactly_the_assets_that_open_the_warehouse_hold_its_pool():
    from platform_assets.definitions import defs

    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.keys:  # asset checks: their runs also hold the pool through their asset
            continue
        opens_warehouse = bool(assets_def.required_resource_keys & {"warehouse", "dbt"})
        pooled = assets_def.node_def.pool == "warehouse"
        assert opens_warehouse == pooled, f"{assets_def.node_def.name}: opens the warehouse {opens_warehouse}, pool {pooled}"

"""MLflow runs that cannot stay RUNNING after their Dagster run has ended or died.

Plain functions over an ``MlflowClient`` and a Dagster instance, used by the
run-failure sensor (:mod:`platform_assets.defs.train.sensors`) and by a sweep at the
start of every model run (so the guarantee also holds under plain
``dagster asset materialize`` with no daemon). Only MLflow runs still RUNNING
are touched: a run that finished (say, training succeeded and a later step of
the Dagster run failed) keeps its status. Imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Iterator

import dagster as dg

from platform_assets import config

DAGSTER_RUN_TAG = "dagster_run_id"
PARENT_RUN_TAG = "mlflow.parentRunId"
# Where the model asset's run worker lives: a run left RUNNING by a worker that no longer exists is ended.
WORKER_HOST_TAG = "worker_host"
WORKER_PID_TAG = "worker_pid"
# Why the platform ended a run, on the run itself (shown in the MLflow UI).
ENDED_REASON_TAG = "ended_by_platform"
# dagster-mlflow starts a run named after the Dagster job and tags it a moment later: a worker killed
# in between leaves a run with no Dagster run id. Such a run is ended once older than this, and only
# when named after a job that has runs in this instance (anyone else's run in the experiment is left alone).
UNTAGGED_GRACE_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class EndedRun:
    """One MLflow run that was ended as FAILED, and why."""

    run_id: str
    reason: str


def worker_tags() -> dict[str, str]:
    """Tags naming this process, so that a later sweep can tell a dead worker from a live one."""
    return {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(os.getpid())}


def _worker_dead(tags: dict[str, str]) -> bool:
    """True when the tags name a process on this host that no longer exists.

    A worker on another host (another pod) is never judged from here: only the
    run monitor and the run-failure sensor, which know its Dagster run ended, end it.
    """
    if tags.get(WORKER_HOST_TAG) != socket.gethostname() or not tags.get(WORKER_PID_TAG, "").isdigit():
        return False
    try:
        os.kill(int(tags[WORKER_PID_TAG]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _search(client, experiment_id: str, filter_string: str) -> list:
    """Every run matching ``filter_string`` (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _end(client, run_id: str, reason: str) -> EndedRun:
    client.set_tag(run_id, ENDED_REASON_TAG, reason)
    client.set_terminated(run_id, status="FAILED")
    return EndedRun(run_id, reason)


def end_runs_of_dagster_run(client, experiment_id: str, dagster_run_id: str, reason: str) -> list[EndedRun]:
    """Ends as FAILED the RUNNING MLflow runs tagged with ``dagster_run_id`` and their RUNNING child runs.

    Child runs (the candidates) carry no ``dagster_run_id`` tag; they are found
    by their ``mlflow.parentRunId`` tag, whatever the parent's status.
    """
    ended = []
    for parent in _search(client, experiment_id, f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}'"):
        children = _search(
            client, experiment_id, f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}' and attributes.status = 'RUNNING'"
        )
        ended += [_end(client, c.info.run_id, f"{reason} (parent run {parent.info.run_id})") for c in children]
        if parent.info.status == "RUNNING":
            ended.append(_end(client, parent.info.run_id, reason))
    return ended


def _dagster_verdict(instance, tags: dict[str, str], now_ms: int, start_ms: int, run_name: str) -> str | None:
    """Why a RUNNING MLflow run with these (own or parent's) tags is orphaned, or ``None`` if it may be live."""
    dagster_run_id = tags.get(DAGSTER_RUN_TAG)
    if not dagster_run_id:
        old = now_ms - start_ms > UNTAGGED_GRACE_MS
        ours = old and bool(run_name) and bool(instance.get_runs(dg.RunsFilter(job_name=run_name), limit=1))
        return f"named after Dagster job {run_name!r}, no Dagster run id, started over 10 minutes ago" if ours else None
    record = instance.get_run_by_id(dagster_run_id)
    if record is None:
        return f"Dagster run {dagster_run_id} is unknown to this instance"
    if record.is_finished:
        return f"Dagster run {dagster_run_id} finished with status {record.status.value}"
    if _worker_dead(tags):
        return f"Dagster run {dagster_run_id} is {record.status.value} but its worker (pid {tags[WORKER_PID_TAG]}) is gone"
    return None


def sweep_orphaned_runs(client, experiment_id: str, instance, current_dagster_run_id: str) -> list[EndedRun]:
    """Ends as FAILED every RUNNING MLflow run whose Dagster run is over, unknown, or whose worker died.

    Policy (a child run is judged by its parent's tags):

    - the current Dagster run's runs are never touched;
    - Dagster run finished (SUCCESS, FAILURE, CANCELED) or unknown to ``instance``: ended;
    - Dagster run still marked in progress but its worker process, recorded in
      the run's ``worker_host``/``worker_pid`` tags, no longer exists on this
      host (a ``kill -9`` with no run monitor to notice): ended;
    - no Dagster run id anywhere: ended once older than ten minutes if named
      after a job that has runs in ``instance`` (dagster-mlflow names its runs
      after the job, and tags them just after); any other run is not the platform's.

    Returns:
        The runs ended, with the reason also written to each run's ``ended_by_platform`` tag.
    """
    import time

    now_ms = int(time.time() * 1000)
    running = _search(client, experiment_id, "attributes.status = 'RUNNING'")
    parents: dict[str, dict[str, str]] = {}
    ended = []
    for run in running:
        tags = run.data.tags
        parent_id = tags.get(PARENT_RUN_TAG)
        if parent_id:
            if parent_id not in parents:
                with contextlib.suppress(Exception):  # a deleted parent leaves the child to the untagged rule
                    parents[parent_id] = client.get_run(parent_id).data.tags
            tags = {**parents.get(parent_id, {}), **{k: v for k, v in tags.items() if k != DAGSTER_RUN_TAG}}
        if tags.get(DAGSTER_RUN_TAG) == current_dagster_run_id:
            continue
        reason = _dagster_verdict(instance, tags, now_ms, run.info.start_time or now_ms, run.info.run_name)
        if reason:
            ended.append(_end(client, run.info.run_id, reason))
    return ended


@contextlib.contextmanager
def bounded_http_retries(max_retries: int = 1, timeout_s: int = 10) -> Iterator[None]:
    """Bounds MLflow's HTTP retries while inside (restored after).

    MLflow retries an unreachable server seven times with doubling pauses
    (minutes); a sensor must answer well within the daemon's tick. The variables
    are read on every request, so setting them here takes effect at once.
    """
    with config.temporarily(MLFLOW_HTTP_REQUEST_MAX_RETRIES=str(max_retries), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                            MLFLOW_HTTP_REQUEST_TIMEOUT=str(timeout_s)):
        yield

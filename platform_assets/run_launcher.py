"""The local run launcher: Dagster's default launcher, plus a health check of each run's process.

Run monitoring marks a run whose worker died as failed, but only through the
run launcher's ``check_run_worker_health``, and dagster 1.13's
``DefaultRunLauncher`` has none (``supports_check_run_worker_health`` is
False; the Kubernetes launcher has one). Locally a run whose process is killed
then stays STARTED for ever and holds the run queue and the warehouse pool:
a ``dagster asset materialize`` from the CLI (it runs in its own process,
outside any code server), or a run whose code server died with it. This
launcher launches runs exactly as the default one does and answers the health
check from the process that started the run: the ``pid`` recorded on the run's
RUN_START event. It is meant for one machine (the local profile), where that
process can be looked up; production uses the Kubernetes launcher's own check.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

# A process created this long after the run started cannot be its worker (a reused pid).
_CLOCK_SLACK_S = 1.0


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the process that started ``run_id`` and when it did; ``None`` before it started."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event else None
    return (pid, entry.timestamp) if pid else None


def worker_process_status(pid: int, started_at: float) -> tuple[WorkerStatus, str]:
    """Whether the process ``pid`` that started a run at ``started_at`` still runs, and why not.

    A pid that exists but belongs to a process created after the run started
    was reused by the system: the run's own process is gone. A zombie (killed,
    not yet reaped by its parent) is gone too.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        created, status = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed)"
    except psutil.AccessDenied:
        return WorkerStatus.RUNNING, f"run worker process {pid} exists (not ours to inspect)"
    if created > started_at + _CLOCK_SLACK_S:
        return WorkerStatus.FAILED, f"run worker process {pid} is gone (the pid now belongs to a newer process)"
    if status == psutil.STATUS_ZOMBIE:
        return WorkerStatus.FAILED, f"run worker process {pid} was killed (a zombie, not yet reaped)"
    return WorkerStatus.RUNNING, f"run worker process {pid} is running"


class LocalRunLauncher(dg.DefaultRunLauncher):
    """``DefaultRunLauncher`` whose runs run monitoring can check: a dead run process fails its run.

    Configured in ``dagster.yaml`` as ``run_launcher: {module: platform_assets.run_launcher,
    class: LocalRunLauncher}``; it takes no config.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:  # noqa: D102
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the process that started ``run`` lives; FAILED once it is gone.

        A run with no recorded process yet is reported RUNNING: monitoring
        fails runs whose status is anything else, and the start timeout
        covers runs that never start.
        """
        found = run_worker_pid(self._instance, run.run_id)
        if found is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the run has not recorded its process yet")
        status, message = worker_process_status(*found)
        return CheckRunHealthResult(status, message)

"""Closes the MLflow runs of a Dagster run that failed or died, so none stays RUNNING; says what a retrain cost."""

from pathlib import Path

import dagster as dg

from platform_assets import alerts
from platform_assets.declared import use_cases
from platform_assets.resources import MlflowRegistry

RETRAIN_JOB_SUFFIX = "__retrain"


def _sqlite_file_missing(tracking_uri: str) -> bool:
    """True for a SQLite backend whose file does not exist yet (nothing was ever tracked)."""
    prefix = "sqlite:///"
    return tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix):]).exists()


def close_mlflow_runs(mlflow_registry: MlflowRegistry, dagster_run_id: str, status: str) -> str:
    """Ends as FAILED the RUNNING MLflow runs of ``dagster_run_id`` and their child runs; returns what it did.

    Never raises: an unreachable or broken backend is reported in the returned
    text (the sensor logs it and skips), and the next model run's sweep ends the
    runs once the backend is back (:func:`platform_assets.defs.train.runs.sweep_orphaned_runs`).
    """
    if _sqlite_file_missing(mlflow_registry.tracking_uri):
        return "no MLflow backend yet: nothing to close"
    try:
        import mlflow

        from platform_assets.defs.train import runs

        with runs.bounded_http_retries():
            # A client of its own: mlflow.set_tracking_uri would change the process-wide default.
            client = mlflow.MlflowClient(mlflow_registry.tracking_uri)
            experiments = [e for e in (client.get_experiment_by_name(u.model_name) for u in use_cases()) if e]
            if not experiments:
                return "no MLflow experiment of a declared use case: nothing to close"
            ended = [e for experiment in experiments for e in runs.end_runs_of_dagster_run(
                client, experiment.experiment_id, dagster_run_id, f"Dagster run {dagster_run_id} {status}")]
    except Exception as exc:  # noqa: BLE001 - a sensor must never raise; the sweep is the fallback
        return f"MLflow backend unavailable, skipped ({type(exc).__name__}: {str(exc)[:300]})"
    if not ended:
        return f"no RUNNING MLflow run for Dagster run {dagster_run_id}"
    return f"ended {len(ended)} MLflow run(s) as FAILED: {', '.join(e.run_id for e in ended)}"


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ends as FAILED the MLflow runs (and child runs) of any Dagster run that failed or was marked dead.",
)
def mlflow_runs_on_failure(context: dg.RunFailureSensorContext, mlflow_registry: MlflowRegistry) -> None:
    """Closes the failed run's MLflow runs; a backend that cannot be reached is a logged skip.

    Returns nothing: a returned value would make Dagster stop at this run for
    the tick, and every failed run of the tick should be handled.
    """
    run = context.dagster_run
    outcome = close_mlflow_runs(mlflow_registry, run.run_id, run.status.value)
    if outcome.startswith("MLflow backend unavailable"):
        context.log.warning(outcome)
    else:
        context.log.info(outcome)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when a retrain run finishes, with what it cost (wall and CPU seconds, peak memory) by stage.",
)
def alert_on_retrain_done(context: dg.RunStatusSensorContext) -> None:
    """One ``retrained`` alert per successful ``<use case>__retrain`` run, its cost summed over its steps."""
    from platform_assets.cost import costs_by_step, total

    run = context.dagster_run
    if not run.job_name.endswith(RETRAIN_JOB_SUFFIX):
        return
    by_step = costs_by_step(context.instance, run.run_id)
    if not by_step:
        context.log.warning(f"run {run.run_id} recorded no cost metadata: no retrain alert")
        return
    spent = total(by_step)
    use_case = run.job_name[: -len(RETRAIN_JOB_SUFFIX)]
    alerts.alert("retrained", f"{use_case}: retrain finished; it cost {spent.summary()}", run_id=run.run_id,
                 job=run.job_name, wall_s=round(spent.wall_s, 1), cpu_s=round(spent.cpu_s, 1),
                 peak_rss_mb=round(spent.peak_rss_mb), stages={step: c.summary() for step, c in sorted(by_step.items())})

"""Sensors of the closed loop: ingest what the server logged, retrain on drift or new labels, alert.

The decisions are plain functions (:func:`~platform_assets.monitor.retrain.decide_retrain`, :func:`settled_days`);
the sensors read state, call them and request runs. Every sensor is on by
default; intervals come from ``PLATFORM_AUTOMATION_INTERVAL_S``.
"""

import json

import dagster as dg

from platform_assets import alerts, config
from platform_assets.automation import interval_s, retrain_cron
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case
from platform_assets.monitor.arrivals import (
    day_signatures, new_labels_since, outcome_day_signatures, partition_problem, settled_days)
from platform_assets.text import storable
from platform_assets.monitor.retrain import decide_retrain
from platform_assets.resources import PlatformState, Warehouse

RETRAIN_DRIFT_SHARE_ENV = "PLATFORM_RETRAIN_DRIFT_SHARE"
RETRAIN_AUC_DROP_ENV = "PLATFORM_RETRAIN_AUC_DROP"
RETRAIN_COOLDOWN_DAYS_ENV = "PLATFORM_RETRAIN_COOLDOWN_DAYS"
RETRAIN_MIN_NEW_LABELS_ENV = "PLATFORM_RETRAIN_MIN_NEW_LABELS"
RETRAIN_MIN_ROWS_SINCE_ENV = "PLATFORM_RETRAIN_MIN_ROWS_SINCE_DRIFT"
# The op of features/training_set, for the run config that sets its window.
def _metadata_values(event) -> dict:
    materialization = event.asset_materialization if event else None
    return {k: getattr(v, "value", v) for k, v in (materialization.metadata if materialization else {}).items()}


def settled_day_requests(context: dg.SensorEvaluationContext, now: dict[str, str], what: str, run_key_prefix: str,
                         held=None, files_of=None) -> list[dg.RunRequest]:
    """One run request per day whose files changed and settled; the cursor records what was asked for.

    A day that is not a daily partition (after today, before the first, or a name that is
    not a day) is never requested: Dagster would fail the whole tick, every tick, and no
    other day would be ingested. It is logged as a warning naming its files once per change
    of them, kept in the cursor under ``not_partitions`` (for :func:`skip_reason`) and left
    pending: a day after today is requested once it has come.

    Args:
        now: Day -> signature of its files this tick.
        what: What the files are, for the log (``inference log``, ``outcome file``).
        run_key_prefix: Starts each run key; the day and its signature follow.
        held: Optional ``day -> bool``: the warehouse already holds the day from these files (no run).
        files_of: Optional ``day -> paths``: named in the warning about a day that is not a partition.
    """
    from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS

    cursor = json.loads(context.cursor) if context.cursor else {}
    ingested = cursor.setdefault("ingested", {})
    first, last = DAILY_PARTITIONS.start.strftime("%Y-%m-%d"), DAILY_PARTITIONS.get_last_partition_key()
    warned, refused = cursor.get("not_partitions", {}), {}
    requests = []
    for day in settled_days(now, cursor.get("seen", {}), ingested):
        if why := partition_problem(day, first, last):
            refused[day] = {"why": why, "signature": now[day]}
            if warned.get(day, {}).get("signature") != now[day]:
                names = [storable(str(p)) for p in files_of(day)] if files_of else []
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                context.log.warning(f"{what} of {storable(day)} not ingested: {why}" + (f": {shown}" if names else ""))
            continue
        if held is not None and day not in ingested and held(day):
            context.log.info(f"{what} of {day} is already ingested from these files: skipped")
        else:
            requests.append(dg.RunRequest(run_key=f"{run_key_prefix}{day}:{now[day]}", partition_key=day))
        ingested[day] = now[day]
    cursor["seen"], cursor["not_partitions"] = now, refused
    context.update_cursor(json.dumps(cursor))
    return requests


def skip_reason(context: dg.SensorEvaluationContext, nothing: str) -> dg.SkipReason:
    """``nothing``, followed by the settled days left out for not being partitions (from the cursor): on every tick."""
    refused = (json.loads(context.cursor) if context.cursor else {}).get("not_partitions", {})
    if refused:
        nothing += "; not partitions, not ingested: " + ", ".join(
            f"{storable(day)} ({entry['why']})" for day, entry in sorted(refused.items()))
    return dg.SkipReason(nothing)


@dg.run_failure_sensor(
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=interval_s(),
    description="Alerts on a failed gate, a failed deployment or any other failed run.",
)
def alert_on_failure(context: dg.RunFailureSensorContext):
    """Sends one alert per failed run, naming the gate or the deployment when they were the cause."""
    run = context.dagster_run
    records = context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed_checks = [r.dagster_event.event_specific_data for r in records
                     if not r.dagster_event.event_specific_data.passed]
    gate = [c for c in failed_checks if c.check_name == "eval_gate_passed"]
    failed_steps = {e.step_key for e in context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)}
    if gate:
        kind, message = "gate_failed", (f"the challenger of {gate[0].asset_key.path[0]} failed the gate "
                                        f"({gate[0].check_name}): the champion keeps serving")
    elif any(step.endswith("__deploy__deployment") for step in failed_steps):
        kind, message = "deployment_failed", "the deployment failed: check that a model server answers"
    else:
        kind, message = "run_failed", context.failure_event.message or "run failed"
    alerts.alert(kind, message, run_id=run.run_id, job=run.job_name, failed_steps=sorted(failed_steps))


def build_monitor_automation(use_case: UseCase) -> tuple[list, list, list]:
    """The use case's jobs, sensors and schedule of the closed loop.

    Returns:
        ``(jobs, sensors, schedules)``: ``<use case>__retrain`` (training set to deployment),
        ``<use case>__inference_days`` and ``<use case>__outcome_days``; the drift, new-label,
        inference-log and outcome-file sensors; the weekly retrain.
    """
    keys = for_use_case(use_case)
    training_set_op = keys.training_set.to_python_identifier()
    retrain_job = dg.define_asset_job(
        f"{use_case.name}__retrain",
        selection=dg.AssetSelection.assets(keys.training_set, keys.model, keys.eval_report, keys.champion,
                                           keys.deployment),
        description="Training set, model, governed evaluation and (if the gate passes) deployment.",
    )
    # Retraining at the latest on the cron, whatever the sensors saw.
    retrain_schedule = dg.ScheduleDefinition(
        name=f"{use_case.name}__retrain_weekly",
        job=retrain_job,
        cron_schedule=retrain_cron(),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"platform/trigger": "cron"},
    )
    inference_days_job = dg.define_asset_job(
        f"{use_case.name}__inference_days",
        selection=dg.AssetSelection.assets(keys.inference_log),
        description="Ingest the model server's inference log for a day or a range of days.",
    )
    outcome_days_job = dg.define_asset_job(
        f"{use_case.name}__outcome_days",
        selection=dg.AssetSelection.assets(keys.outcomes),
        description="Ingest the outcome file of a day (or a range of days).",
    )

    @dg.sensor(
        name=f"{use_case.name}__retrain_on_drift",
        job=retrain_job,
        minimum_interval_seconds=interval_s(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests retraining when a new drift report crosses a threshold, once per drift episode.",
    )
    def retrain_on_drift(context: dg.SensorEvaluationContext):
        """Reads each new drift report's figures and requests the retrain job (with a cool-down).

        Its cursor keeps the last report read and the report that last asked for a
        retrain (an asset sensor's cursor is Dagster's own, so this is a plain sensor).
        """
        state = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.fetch_materializations(keys.drift_report, limit=1).records
        if not records or records[0].storage_id <= state.get("last_event", -1):
            return dg.SkipReason("no new drift report")
        event = records[0].event_log_entry
        figures = _metadata_values(event)
        decision = decide_retrain(
            figures, state.get("last_request"),
            drift_share=config.get_float(RETRAIN_DRIFT_SHARE_ENV),
            auc_drop=config.get_float(RETRAIN_AUC_DROP_ENV),
            cooldown_days=config.get_int(RETRAIN_COOLDOWN_DAYS_ENV),
            min_rows_since=config.get_int(RETRAIN_MIN_ROWS_SINCE_ENV),
        )
        reason = decision.reason
        record = {"window_end": figures.get("window_end"), "model_version": figures.get("model_version"), "reason": reason,
                  "since": decision.since}
        state.update(last_event=records[0].storage_id, last_seen=record)
        if not decision.request:
            if decision.waiting and state.get("waiting_since") != decision.since:
                alerts.alert("quality", f"model v{figures.get('model_version')}: {reason}", **record)
            state["waiting_since"] = decision.since if decision.waiting else None
            context.update_cursor(json.dumps(state))
            return dg.SkipReason(reason)
        kind = "quality" if "AUC" in reason else "drift"
        alerts.alert(kind, f"model v{figures.get('model_version')}: {reason}; retraining", **record)
        state["last_request"] = record
        state["waiting_since"] = None
        context.update_cursor(json.dumps(state))
        # After a concept drift, the training set starts where quality fell; otherwise it keeps its window.
        run_config = {"ops": {training_set_op: {"config": {"since": decision.since}}}} if decision.since else {}
        return dg.RunRequest(
            run_key=f"{use_case.name}:drift:{figures.get('model_version')}:{figures.get('window_end')}",
            run_config=run_config,
            tags={"platform/retrain_reason": reason[:200], "platform/trigger": "drift",
                  **({"platform/training_since": decision.since} if decision.since else {})},
        )


    @dg.sensor(
        name=f"{use_case.name}__retrain_on_new_labels",
        job=retrain_job,
        minimum_interval_seconds=interval_s(60),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests retraining once PLATFORM_RETRAIN_MIN_NEW_LABELS new outcomes are known.",
    )
    def retrain_on_new_labels(context: dg.SensorEvaluationContext, warehouse: Warehouse):
        """Counts the labels the current training set did not have; requests one retrain per training set."""
        event = context.instance.get_latest_materialization_event(keys.training_set)
        as_of = _metadata_values(event).get("labels_known_as_of") if event else None
        threshold = config.get_int(RETRAIN_MIN_NEW_LABELS_ENV)
        from pathlib import Path

        if not Path(warehouse.database).exists():
            return dg.SkipReason("no warehouse yet")
        try:
            with warehouse.connect(read_only=True, lock_timeout_s=0) as con:
                count = new_labels_since(con, as_of, use_case)
        except TimeoutError:
            return dg.SkipReason("the warehouse is busy: counting next tick")
        if count < threshold:
            return dg.SkipReason(f"{count} new labels since {as_of or 'never'} (retrain at {threshold})")
        return dg.RunRequest(run_key=f"{use_case.name}:labels:{as_of}", tags={"platform/trigger": "new_labels",
                                                               "platform/retrain_reason": f"{count} new labels"})


    @dg.sensor(
        name=f"{use_case.name}__inference_log_files",
        job=inference_days_job,
        minimum_interval_seconds=interval_s(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests each day of the model server's log once its files stop changing.",
    )
    def inference_log_files(context: dg.SensorEvaluationContext, state: PlatformState, warehouse: Warehouse):
        """Requests ``inference_days`` for a day whose log files changed and settled (same on two ticks).

        A day the warehouse already holds from exactly these files (ingested by hand, or
        before this sensor's cursor was reset) is recorded as ingested without a run.
        """
        from pathlib import Path

        from platform_assets.monitor.logs import day_files, unchanged_since_ingestion

        def held(day: str) -> bool:
            if not Path(warehouse.database).exists():
                return False
            try:
                with warehouse.connect(read_only=True, lock_timeout_s=0) as con:
                    return unchanged_since_ingestion(con, state.paths.of(use_case.name).inference, day,
                                                     use_case.monitor_schema)
            except TimeoutError:
                return False  # busy: ingest (a day's ingestion replaces the day, so a repeat is harmless)

        inference = state.paths.of(use_case.name).inference
        requests = settled_day_requests(context, day_signatures(inference), "inference log", f"{use_case.name}:", held,
                                        lambda day: day_files(inference, day))
        return requests or skip_reason(context, "no settled new log files")


    @dg.sensor(
        name=f"{use_case.name}__outcome_files",
        job=outcome_days_job,
        minimum_interval_seconds=interval_s(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests each day's outcome file once it stops changing (and again if it is replaced).",
    )
    def outcome_files(context: dg.SensorEvaluationContext, state: PlatformState):
        """Requests ``outcome_days`` for a day whose outcome file is new or changed and settled (same on two ticks)."""
        from platform_assets.monitor.outcomes import day_files

        folder = state.paths.of(use_case.name).outcomes
        requests = settled_day_requests(context, outcome_day_signatures(folder), "outcome file",
                                        f"{use_case.name}:outcomes:", files_of=lambda day: day_files(folder, day))
        return requests or skip_reason(context, "no settled new outcome files")


    jobs, sensors = [retrain_job, inference_days_job], [retrain_on_drift, retrain_on_new_labels, inference_log_files]
    if use_case.source.label_time:  # outcomes arrive later, in outcome files
        jobs.append(outcome_days_job)
        sensors.append(outcome_files)
    return jobs, sensors, [retrain_schedule]

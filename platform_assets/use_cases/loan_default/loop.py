"""The closed loop, shown: days of traffic through the real server, drift, retraining, a new version.

``python -m platform_assets loop`` (``make loop``) generates a history and a run
of live days with concept drift from a chosen day. It lands the history, and for
each live day sends that day's applications to the model server as callers do
(a bounded client on loopback), then lands the day's file. What happens next is
the platform's own automation: the landing and inference-log sensors, the
automation conditions, the drift and new-label retrain sensors. With
``--daemon`` the running ``dagster-daemon`` (``make ui``) does that work and the
loop waits for it; by default an :class:`InProcessDaemon` evaluates the same
conditions and sensors against the instance and runs what they request, in
this process, tick by tick (no sleeps), which is also how the tests drive it.

The timeline printed at the end has one line per live day: traffic sent and
answered, drift share and live ROC AUC of the served model, retrains requested,
the gate's decision and the version serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from platform_assets import settings
from platform_assets.declared import use_case
from platform_assets.keys import for_use_case

logger = logging.getLogger("platform.loop")

# The loop simulates the loan-default use case (its generator has the drift scenarios).
USE_CASE = "loan_default"
KEYS = for_use_case(use_case(USE_CASE))
# The sensors the loop drives, in the order a tick runs them.
LOOP_SENSORS = tuple(f"{USE_CASE}__{name}" for name in (
    "landing_files", "outcome_files", "inference_log_files", "retrain_on_drift", "retrain_on_new_labels"))


@dataclass(frozen=True)
class LoopConfig:
    """What the loop simulates.

    Attributes:
        history_days: Days landed before the first live day (the first model trains on them).
        live_days: Days of traffic sent through the server, one after another.
        rows_per_day: Mean applications per day.
        drift_day: Live day (0-based) from which the concept drifts; ``None``: no drift.
        seed: Generator seed.
        label_delay_days: (min, max) days from an application to its known outcome.
        concurrency: Requests in flight at most.
    """

    history_days: int = 35
    live_days: int = 12
    rows_per_day: int = 500
    drift_day: int | None = 4
    seed: int = 11
    label_delay_days: tuple[int, int] = (1, 2)
    concurrency: int = 8


@dataclass
class DayReport:
    """What one live day showed."""

    day: str
    sent: int
    answered: int
    errors: dict
    serving_version: str | None = None
    drift_share: float | None = None
    roc_auc: float | None = None
    labelled_rows: int | None = None
    retrains_requested: list[str] = field(default_factory=list)
    gate: list[str] = field(default_factory=list)
    runs: int = 0
    landed_at: float | None = None  # wall time (epoch s) the day's landing file was written
    traffic: object = None  # the day's TrafficResult: request id of every application, answers

    def line(self) -> str:
        """The day as one line of the timeline."""
        auc = f"{self.roc_auc:.3f}" if self.roc_auc is not None else "  -  "
        share = f"{self.drift_share:.2f}" if self.drift_share is not None else " -  "
        events = "; ".join([*(f"retrain requested: {r}" for r in self.retrains_requested),
                            *(f"gate {g}" for g in self.gate)]) or ""
        return (f"{self.day}  sent {self.sent:5d}  ok {self.answered:5d}  {unanswered(self.errors):<28}"
                f"  serving v{self.serving_version or '-':<3}  drift {share}  live AUC {auc}  runs {self.runs:2d}  {events}")


# What an unanswered request's status says: a planted invalid row gets 400 (the generator's dirty_fraction), by design.
CAUSES = {"400": "invalid row", "404": "no such route", "503": "unavailable", "500": "server error"}


def unanswered(errors: dict) -> str:
    """The requests not answered, by cause (``no answer 3: 400 invalid row 3``); empty when every one was."""
    if not errors:
        return ""
    causes = ", ".join(f"{k} {CAUSES.get(str(k), '')} {v}".replace("  ", " ") for k, v in sorted(
        errors.items(), key=lambda kv: str(kv[0])))
    return f"no answer {sum(errors.values())}: {causes}"


def timeline_text(reports: list["DayReport"]) -> str:
    """The timeline as one block, framed so that it stands out from the runs' logs printed before it."""
    rule = "=" * 100
    return "\n".join([rule, "CLOSED-LOOP TIMELINE (one line per live day; a planted invalid row gets 400)", rule,
                      *(r.line() for r in reports), rule])


def generate(config: LoopConfig, start: dt.date) -> pd.DataFrame:
    """History and live days from ``start``, with concept drift from ``drift_day`` (seeded)."""
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

    drift = config.drift_day is not None
    return generate_applications(GeneratorConfig(
        start_date=start, days=config.history_days + config.live_days, rows_per_day=config.rows_per_day,
        seed=config.seed, scenario="concept" if drift else "none",
        drift_start_day=config.history_days + (config.drift_day or 0), label_delay_days=config.label_delay_days,
    ))


class InProcessDaemon:
    """What ``dagster-daemon`` does for the platform, in this process: one :meth:`tick` at a time.

    A tick runs the loop's sensors and the automation conditions against the
    instance, then executes every run they requested (in process, in order).
    """

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "DEBUG"):
        self.defs, self.instance = defs, instance
        # The runs' console log (the timeline is the loop's own output; the UI has every event).
        self.run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        self.automation_cursor = None
        self.sensor_cursors: dict[str, str | None] = {}
        self.history: list[dict] = []  # every run: its job, what requested it, success

    def _sensor_requests(self) -> list[tuple[str, dg.RunRequest]]:
        out = []
        for name in LOOP_SENSORS:
            sensor = self.defs.resolve_sensor_def(name)
            context = dg.build_sensor_context(instance=self.instance, cursor=self.sensor_cursors.get(name),
                                              definitions=self.defs, sensor_name=name,
                                              resources={k: self.defs.resources[k] for k in sensor.required_resource_keys})
            data = sensor.evaluate_tick(context)
            self.sensor_cursors[name] = data.cursor
            for request in data.run_requests or []:
                out.append((name, request))
        return out

    def _run_key_seen(self, run_key: str | None) -> bool:
        if not run_key:
            return False
        return bool(self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1))

    def tick(self) -> list[dict]:
        """One evaluation of the sensors and conditions; returns the runs it executed."""
        executed = []
        for sensor, request in self._sensor_requests():
            if self._run_key_seen(request.run_key):
                continue
            sensor_def = self.defs.resolve_sensor_def(sensor)
            tags = {**(request.tags or {}), "dagster/sensor_name": sensor}
            run_config = {**self.run_config, **(request.run_config or {})}
            if request.run_key:
                tags["dagster/run_key"] = request.run_key
            selection = request.asset_selection or (
                list(sensor_def.asset_selection.resolve(self.defs.resolve_asset_graph()))
                if sensor_def.asset_selection is not None else None)
            if selection:  # a sensor that targets assets rather than a job
                job_name = "assets"
                job = self.defs.resolve_implicit_global_asset_job_def()
                result = job.execute_in_process(instance=self.instance, partition_key=request.partition_key,
                                                tags=tags, raise_on_error=False, asset_selection=list(selection),
                                                run_config=run_config)
            else:
                job_name = request.job_name or sensor_def.job_name
                result = self.defs.resolve_job_def(job_name).execute_in_process(
                    instance=self.instance, partition_key=request.partition_key, tags=tags, raise_on_error=False,
                    run_config=run_config)
            executed.append({"job": job_name, "by": sensor, "success": result.success, "run_id": result.run_id,
                             "tags": dict(request.tags or {})})
        evaluation = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance,
                                                       cursor=self.automation_cursor)
        self.automation_cursor = evaluation.cursor
        keys = [r.key for r in evaluation.results if r.true_subset.size > 0 and isinstance(r.key, dg.AssetKey)]
        if keys:
            job = self.defs.resolve_implicit_global_asset_job_def()
            selection = dg.AssetSelection.assets(*keys)
            result = job.execute_in_process(
                instance=self.instance, raise_on_error=False,
                asset_selection=list(selection.resolve(self.defs.resolve_asset_graph())),
                tags={"dagster/from_automation_condition": "true"}, run_config=self.run_config,
            )
            executed.append({"job": "automation", "by": "automation", "success": result.success,
                             "assets": sorted(k.to_user_string() for k in keys), "run_id": result.run_id, "tags": {}})
        self.history += executed
        return executed

    def settle(self, max_ticks: int = 12) -> list[dict]:
        """Ticks until two ticks in a row run nothing (files settle over two ticks); returns the runs."""
        runs, idle = [], 0
        for _ in range(max_ticks):
            executed = self.tick()
            runs += executed
            idle = idle + 1 if not executed else 0
            if idle >= 2:
                break
        return runs


def _latest_record(instance: dg.DagsterInstance, key: dg.AssetKey):
    records = instance.fetch_materializations(key, limit=1).records
    return records[0] if records else None


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None = None) -> dict | None:
    record = _latest_record(instance, key)
    if record is None or (after is not None and record.storage_id <= after):
        return None
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def outcomes_later(apps: pd.DataFrame, landed_at: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits the labels as they become known: with the application when known by its landing, else later.

    Args:
        apps: Generated applications (with ``is_default`` and ``label_ts``).
        landed_at: When each application's file lands.

    Returns:
        The applications with the outcomes unknown at landing emptied, and those
        outcomes (``application_id``, ``is_default``, ``label_ts``), to land in the
        outcome file of the day they became known.
    """
    later = apps["label_ts"] >= landed_at
    outcomes = apps.loc[later, ["application_id", "is_default", "label_ts"]].copy()
    landed = apps.copy()
    landed["is_default"] = landed["is_default"].astype("Int64").mask(later)
    landed["label_ts"] = landed["label_ts"].mask(later)
    return landed, outcomes


def run_day(day: str, applications: pd.DataFrame, landing_dir: Path, state_root: Path, daemon: InProcessDaemon,
            concurrency: int, outcomes: pd.DataFrame | None = None) -> DayReport:
    """Serves one day's applications, lands the day's file, and lets the automation react."""
    DRIFT_REPORT, EVAL_REPORT = KEYS.drift_report, KEYS.eval_report  # noqa: N806
    from platform_assets.monitor.outcomes import write_outcome_files
    from platform_assets.use_cases.loan_default.generator import write_landing_files
    from platform_assets.traffic import send_requests

    use_case_paths = settings.paths(state_root).of(USE_CASE)
    deployment = json.loads((use_case_paths.serving / "deployment.json").read_text())
    traffic = send_requests(deployment["url"], applications, use_case("loan_default").source, concurrency=concurrency)
    report = DayReport(day, traffic.sent, traffic.answered, dict(traffic.errors), traffic=traffic)
    before = _latest_record(daemon.instance, DRIFT_REPORT)
    before_id = before.storage_id if before else None
    write_landing_files(applications, landing_dir)
    if outcomes is not None and len(outcomes):
        write_outcome_files(outcomes, use_case_paths.outcomes, use_case(USE_CASE).source)
    report.landed_at = time.time()
    runs = daemon.settle()
    report.runs = len(runs)
    report.retrains_requested = [r["tags"].get("platform/retrain_reason", r["by"]) for r in runs
                                 if r["job"] == f"{USE_CASE}__retrain"]
    for run in runs:
        evaluations = daemon.instance.all_logs(run["run_id"], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        for record in evaluations:
            check = record.dagster_event.event_specific_data
            if check.asset_key == EVAL_REPORT and check.check_name == "eval_gate_passed":
                report.gate.append("passed" if check.passed else "failed")
    figures = _latest_metadata(daemon.instance, DRIFT_REPORT, before_id) or {}
    report.drift_share, report.roc_auc = figures.get("drift_share"), figures.get("roc_auc")
    report.labelled_rows = figures.get("labelled_rows")
    report.serving_version = json.loads((use_case_paths.serving / "deployment.json").read_text())["model_version"]
    return report


def wait_for_daemon(instance: dg.DagsterInstance, day: str, timeout_s: float, poll_s: float = 5.0) -> int:
    """With the real daemon: waits until the day's inference log was ingested and no run is queued or running.

    Returns:
        The runs that finished meanwhile. Raises ``TimeoutError`` after ``timeout_s``.
    """
    import time

    INFERENCE_LOG = KEYS.inference_log  # noqa: N806

    started, deadline = time.time(), time.monotonic() + timeout_s
    active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]
    while time.monotonic() < deadline:
        ingested = instance.get_latest_materialization_event(INFERENCE_LOG)
        done = any(
            r.asset_materialization and r.asset_materialization.partition == day
            for r in instance.fetch_materializations(INFERENCE_LOG, limit=20).records
        ) if ingested else False
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=active), limit=1)
        if done and not busy:
            return len(instance.get_runs(filters=dg.RunsFilter(created_after=dt.datetime.fromtimestamp(started))))
        time.sleep(poll_s)
    raise TimeoutError(f"the daemon did not ingest the traffic of {day} within {timeout_s:.0f} s: is `make ui` running?")


def wait_for_file(path: Path, timeout_s: float, poll_s: float = 5.0) -> float:
    """Waits until ``path`` exists (the daemon's first deployment); returns the seconds waited."""
    started = time.monotonic()
    while not path.exists():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s: is `make ui` (the daemon) running?")
        time.sleep(poll_s)
    return time.monotonic() - started


def simulate(config: LoopConfig, state_root: Path, instance: dg.DagsterInstance, defs: dg.Definitions | None,
             start: dt.date, echo=print, daemon_timeout_s: float = 900.0,
             log_level: str = "DEBUG") -> tuple[list[DayReport], "InProcessDaemon | None"]:
    """Runs the loop: lands the history, then serves and lands each live day (see the module docstring).

    Args:
        config: What to simulate.
        state_root: ``PLATFORM_HOME`` of the platform the loop drives.
        instance: Its Dagster instance.
        defs: The definitions to drive in process; ``None`` leaves the work to the running daemon.
        start: The first history day (the loop's days must be past days, within the partitions).
        echo: Where the timeline goes, line by line.
        log_level: Console log level of the runs executed in process.

    Returns:
        One report per live day, and the in-process daemon (its ``history`` lists every run).
    """
    from platform_assets import settings
    DRIFT_REPORT = KEYS.drift_report  # noqa: N806
    from platform_assets.monitor.outcomes import write_outcome_files
    from platform_assets.use_cases.loan_default.generator import write_landing_files

    paths = settings.paths(state_root)
    apps = generate(config, start)
    days = apps["application_ts"].dt.date
    history_end = start + dt.timedelta(days=config.history_days)
    daemon = InProcessDaemon(defs, instance, log_level) if defs is not None else None
    echo(f"landing {config.history_days} days of history ({(days < history_end).sum()} applications) ...")
    # Outcomes known when a file lands travel with it; the others land later in outcome files.
    history_end_ts = pd.Timestamp(history_end)
    landed_at = (apps["application_ts"].dt.normalize() + pd.Timedelta(days=1)).clip(lower=history_end_ts)
    apps, pending = outcomes_later(apps, landed_at)
    pending_days = pending["label_ts"].dt.date
    landing = paths.landing / use_case(USE_CASE).source.landing_folder
    write_landing_files(apps[days < history_end], landing)
    if daemon is not None:
        # As `make materialize` does before automation takes over: the history in one run, then a first model.
        last = (history_end - dt.timedelta(days=1)).isoformat()
        for job, tags in ((f"{USE_CASE}__ingest_days", {"dagster/asset_partition_range_start": start.isoformat(),
                                           "dagster/asset_partition_range_end": last}),
                          (f"{USE_CASE}__features_to_serving", {})):
            result = defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags, raise_on_error=False,
                                                                  run_config=daemon.run_config)
            daemon.history.append({"job": job, "by": "bootstrap", "success": result.success, "run_id": result.run_id,
                                   "tags": tags})
        daemon.settle()
    deployment = paths.of(USE_CASE).serving / "deployment.json"
    if daemon is None:
        echo(f"waiting for the daemon to ingest the history and deploy a first model (at most {daemon_timeout_s:.0f} s)")
        waited = wait_for_file(deployment, daemon_timeout_s)
        echo(f"first model serving after {waited:.0f} s")
    if not deployment.exists():
        if daemon is not None:
            failed = [r for r in daemon.history if not r["success"]]
            raise RuntimeError(f"no model is serving after the history was processed; failed runs: {failed}")
        raise RuntimeError(f"no deployment at {deployment}: start `make ui` and let it deploy a first model")
    drift_day = (history_end + dt.timedelta(days=config.drift_day)).isoformat() if config.drift_day is not None else None
    echo(f"serving v{json.loads(deployment.read_text())['model_version']}; concept drift from {drift_day or 'never'}")
    reports = []
    for offset in range(config.live_days):
        day = history_end + dt.timedelta(days=offset)
        todays = apps[days == day]
        if daemon is not None:
            report = run_day(day.isoformat(), todays, landing, paths.root, daemon, config.concurrency,
                             pending[pending_days == day])
        else:
            from platform_assets.traffic import send_requests

            traffic = send_requests(json.loads(deployment.read_text())["url"], todays, use_case("loan_default").source,
                                    config.concurrency)
            write_landing_files(todays, landing)
            write_outcome_files(pending[pending_days == day], paths.of(USE_CASE).outcomes, use_case(USE_CASE).source)
            report = DayReport(day.isoformat(), traffic.sent, traffic.answered, dict(traffic.errors), traffic=traffic,
                               landed_at=time.time())
            report.runs = wait_for_daemon(instance, day.isoformat(), daemon_timeout_s)
            report.serving_version = json.loads(deployment.read_text())["model_version"]
            # The daemon's newest drift report (it may lag the day: its hops run on later ticks).
            figures = _latest_metadata(instance, DRIFT_REPORT) or {}
            report.drift_share, report.roc_auc = figures.get("drift_share"), figures.get("roc_auc")
        marker = "  <- drift starts" if drift_day == day.isoformat() else ""
        echo(report.line() + marker)
        reports.append(report)
    latency = retrain_latency(instance, reports, drift_day)
    if latency is None and daemon is None and drift_day is not None:
        # The daemon reacts at its own pace: give its retrain (outcomes of the drifted days first) time to land.
        echo(f"waiting for the daemon's drift-triggered retrain (at most {daemon_timeout_s:.0f} s)")
        deadline = time.monotonic() + daemon_timeout_s
        while latency is None and time.monotonic() < deadline:
            time.sleep(5)
            latency = retrain_latency(instance, reports, drift_day)
    if latency:
        echo(f"drifted day landed -> new version serving: {latency['drift_landed_to_serving_s']:.0f} s; "
             f"landing of {latency['trigger_day']} (whose outcomes triggered the retrain) -> serving: "
             f"{latency['trigger_landed_to_serving_s']:.0f} s; retrain run: {latency['retrain_run_s']:.0f} s")
    timeline = paths.root / "loop" / "timeline.json"
    timeline.parent.mkdir(parents=True, exist_ok=True)
    timeline.write_text(json.dumps({
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__}, "drift_day": drift_day,
        "days": [{k: v for k, v in vars(r).items() if k != "traffic"} for r in reports], "latency": latency,
    }, indent=2, default=str))
    return reports, daemon


def retrain_latency(instance: dg.DagsterInstance, reports: list[DayReport], drift_day: str | None) -> dict | None:
    """Wall-clock seconds from landings to the first drift-triggered version serving, or ``None``.

    ``drift_landed_to_serving_s`` runs from the landing of the first drifted day (it
    includes the days it takes for their outcomes to be known, compressed into the
    loop's pace); ``trigger_landed_to_serving_s`` from the landing of the day after
    which the drift sensor asked (the platform's own reaction time: ingestion,
    features, inference log, drift report, sensor tick, retrain, gate, deployment).
    """
    DEPLOYMENT = KEYS.deployment  # noqa: N806

    runs = [r for r in instance.get_run_records(filters=dg.RunsFilter(tags={"platform/trigger": "drift"}))]
    if not runs or drift_day is None:
        return None
    first = min(runs, key=lambda r: r.create_timestamp.timestamp())
    requested = first.create_timestamp.timestamp()
    deployed = [r for r in instance.fetch_materializations(DEPLOYMENT, limit=100).records
                if r.run_id == first.dagster_run.run_id]
    landed = {r.day: r.landed_at for r in reports if r.landed_at is not None}
    trigger = max((d for d, t in landed.items() if t <= requested), default=None)
    if not deployed or drift_day not in landed or trigger is None:
        return None
    serving = deployed[0].timestamp
    return {"drift_day": drift_day, "trigger_day": trigger, "retrain_run_id": first.dagster_run.run_id,
            "drift_landed_to_serving_s": serving - landed[drift_day],
            "trigger_landed_to_serving_s": serving - landed[trigger],
            "retrain_run_s": serving - requested}

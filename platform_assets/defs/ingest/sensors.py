"""The landing sensor: settled new or changed landing files trigger ingestion and validation of their days."""

import json

import dagster as dg

from platform_assets import config

from platform_assets.automation import interval_s

from platform_assets.concurrency import WAREHOUSE_POOL, ensure_pool_limit
from platform_assets.defs.ingest import landing_watch as watch
from platform_assets.declarations import Source, UseCase
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS
from platform_assets.keys import for_use_case
from platform_assets.resources import Landing, Warehouse

DAY_TAG = "landing/day"
FILES_TAG = "landing/files"
MAX_ATTEMPTS_ENV = "PLATFORM_LANDING_MAX_ATTEMPTS"


def load_cursor(text: str | None) -> dict:
    """The sensor's memory: each file's last size, mtime and hash; stray files reported; days given up."""
    cursor = json.loads(text) if text else {}
    if not isinstance(cursor.get("files"), dict):  # none yet, or the older {path: sha256} layout
        cursor = {}
    return {"files": cursor.get("files", {}), "reported": cursor.get("reported", {}),
            "given_up": cursor.get("given_up", {})}


def by_day(settled: dict[str, str], pending: set[str], source: Source) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Settled files grouped by their day, leaving out days with a file still pending; and files of no day."""
    from platform_assets.ingest.landing import partition_of

    days: dict[str, dict[str, str]] = {}
    unplaced = {}
    for path, digest in settled.items():
        day = partition_of(path, source)
        if day is None or not DAILY_PARTITIONS.has_partition_key(day):
            unplaced[path] = digest
        else:
            days.setdefault(day, {})[path] = digest
    busy = {partition_of(path, source) for path in pending}
    return {d: f for d, f in days.items() if d not in busy}, unplaced


def max_attempts(log) -> int:
    """``PLATFORM_LANDING_MAX_ATTEMPTS``, or the default (with a warning) when it is not a positive number."""
    if not config.is_set(MAX_ATTEMPTS_ENV):
        return watch.DEFAULT_MAX_ATTEMPTS
    value = config.get(MAX_ATTEMPTS_ENV)
    try:
        if int(value) > 0:
            return int(value)
    except ValueError:
        pass
    log.warning(f"{MAX_ATTEMPTS_ENV}={value!r} is not a positive whole number; using {watch.DEFAULT_MAX_ATTEMPTS}")
    return watch.DEFAULT_MAX_ATTEMPTS


def build_landing_sensor(use_case: UseCase) -> dg.SensorDefinition:
    """The landing sensor of a use case's source: settled new or changed files trigger their days."""
    keys, source = for_use_case(use_case), use_case.source

    @dg.sensor(
        name=f"{use_case.name}__landing_files",
        asset_selection=dg.AssetSelection.assets(keys.raw, keys.validated, keys.quarantined),
        minimum_interval_seconds=interval_s(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests and validates the days whose settled landing files are not in the warehouse yet.",
    )
    def landing_files_sensor(context: dg.SensorEvaluationContext, landing: Landing, warehouse: Warehouse):
        """Requests one run per day whose settled files the warehouse does not hold, or whose run failed.

        A file is settled when its size and mtime are the same on two ticks (a
        writer may still be appending; writers that can should write a hidden
        ``.name`` and rename it, hidden files are never listed). What the
        warehouse holds decides, whatever route ingested it; a day whose run for
        the same files crashed is requested again with a new run key, up to
        ``PLATFORM_LANDING_MAX_ATTEMPTS`` (default 3) runs, then logged once and
        left until its files change; one stopped by a blocking check (the
        quarantine gate) is a verdict on the files and is not requested again. While the warehouse is in use the tick is
        skipped with the reason. Files that belong to no day are reported once as
        observations of the raw asset, and rejected with their reason by the next
        ingestion run.
        """
        from platform_assets.ingest.landing import file_sha256, source_landing_url

        cursor = load_cursor(context.cursor)
        landing_url = source_landing_url(landing.url, source)
        try:
            stats = watch.stat_landing_files(landing_url)
            settled, cursor["files"] = watch.settle(cursor["files"], stats, file_sha256)
        except Exception as exc:  # a sensor must keep ticking: an unreadable landing location is a skip
            return dg.SkipReason(f"cannot read the landing location {landing_url}: {exc}")
        pending = set(stats) - set(settled)
        days, unplaced = by_day(settled, pending, source)
        waiting = f"{len(pending)} file(s) still changing or new since the last tick" if pending else ""

        def skip(reason: str) -> dg.SensorResult:
            return dg.SensorResult(skip_reason="; ".join(filter(None, [reason, waiting])), cursor=json.dumps(cursor))

        busy = watch.warehouse_run_in_progress(context.instance, WAREHOUSE_POOL)
        if busy:
            return skip(f"the warehouse is in use by run {busy}: checking again on the next tick")
        try:
            held = watch.held_files(warehouse.database, warehouse.connect,
                                    (source.landing_files_table, source.rejected_files_table))
        except TimeoutError as exc:
            return skip(f"the warehouse is locked by another process, checking again on the next tick ({exc})")
        except Exception as exc:  # a damaged or foreign file: say so on every tick, never stop ticking
            return skip(f"cannot read the landing files recorded in {warehouse.database}: {exc}")

        hashes = {day: watch.files_hash(files) for day, files in days.items()}
        runs = watch.requested_runs(context.instance, FILES_TAG, sorted(set(hashes.values())))
        requests, given_up, attempts = [], {}, max_attempts(context.log)
        for day, files in sorted(days.items()):
            digest = hashes[day]
            action, why = watch.decide(
                files, held.get(day, {}), runs[digest], attempts,
                lambda run: watch.stopped_by_blocking_check(context.instance, run),
            )
            if action == watch.REQUEST:
                requests.append(dg.RunRequest(
                    partition_key=day,
                    # A new key per attempt: the daemon runs each key once, so a failed day can be asked again.
                    run_key=f"{day}:{digest}:{len(runs[digest])}",
                    tags={DAY_TAG: day, FILES_TAG: digest, "landing/changed_files": str(len(files))},
                ))
                context.log.info(f"{day}: {why}; run {len(runs[digest]) + 1} for its {len(files)} file(s)")
            elif action == watch.GIVE_UP:
                given_up[day] = digest
                if cursor["given_up"].get(day) != digest:  # said once, not on every tick
                    context.log.warning(f"{day}: {why}; not requested again until its files change")
        cursor["given_up"] = given_up

        stray = {p: d for p, d in unplaced.items() if held.get(None, {}).get(p) != d and cursor["reported"].get(p) != d}
        cursor["reported"] = {p: d for p, d in unplaced.items() if p in stray or cursor["reported"].get(p) == d}
        for path in stray:
            context.log.warning(f"{path}: belongs to no day (unexpected name or day outside the partitions)")
        observations = [
            dg.AssetObservation(asset_key=keys.raw, metadata={"file_of_no_day": path, "sha256": digest})
            for path, digest in sorted(stray.items())
        ]
        if not requests:
            return dg.SensorResult(
                skip_reason="; ".join(filter(None, [f"no day to ingest among {len(stats)} landing files", waiting])),
                asset_events=observations,
                cursor=json.dumps(cursor),
            )
        ensure_pool_limit(context.instance)  # so that the runs asked for queue behind each other from the first
        return dg.SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(cursor))

    return landing_files_sensor

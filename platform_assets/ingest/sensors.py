"""The landing sensor: new or changed landing files trigger ingestion and validation of their days."""

import hashlib
import json

import dagster as dg

from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.ingest.partitions import DAILY_PARTITIONS
from platform_assets.resources import Landing
from platform_assets.validate.assets import QUARANTINED_APPLICATIONS, VALIDATED_APPLICATIONS


def landing_changes(previous: dict, current: dict) -> list[str]:
    """Paths whose content hash is new or differs from the cursor's (removed files are not changes)."""
    return sorted(path for path, digest in current.items() if previous.get(path) != digest)


def changed_days(changed: list[str], hashes: dict[str, str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Groups changed files by the day (partition) they belong to; also returns the files of no day."""
    from platform_assets.ingest.landing import partition_of

    days: dict[str, dict[str, str]] = {}
    unplaced = []
    for path in changed:
        day = partition_of(path)
        if day is None or not DAILY_PARTITIONS.has_partition_key(day):
            unplaced.append(path)
        else:
            days.setdefault(day, {})[path] = hashes[path]
    return days, unplaced


@dg.sensor(
    name="landing_files_sensor",
    asset_selection=dg.AssetSelection.assets(RAW_APPLICATIONS, VALIDATED_APPLICATIONS, QUARANTINED_APPLICATIONS),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests and validates the days whose landing files are new or changed.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: Landing):
    """Requests one run per day with new or changed files; the cursor keeps each file's content hash.

    Files that belong to no day (an unexpected name, a day outside the
    partitions) are reported once as observations of the raw asset, and
    rejected with their reason by the next ingestion run.
    """
    from platform_assets.ingest.landing import file_sha256, list_landing_files

    previous = json.loads(context.cursor) if context.cursor else {}
    try:
        # The same bytes rewritten are not a change: files are compared by content hash.
        current = {url: file_sha256(url) for url in list_landing_files(landing.url)}
    except Exception as exc:  # a sensor must keep ticking: an unreadable landing location is a skip
        return dg.SkipReason(f"cannot read the landing location {landing.url}: {exc}")
    changed = landing_changes(previous, current)
    if not changed:
        return dg.SkipReason(f"no new or changed files among {len(current)} landing files")
    days, unplaced = changed_days(changed, current)
    requests = [
        dg.RunRequest(
            partition_key=day,
            # The same day with the same files is requested once, however often the sensor ticks.
            run_key=f"{day}:{hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]}",
            tags={"landing/changed_files": str(len(files))},
        )
        for day, files in sorted(days.items())
    ]
    observations = [
        dg.AssetObservation(asset_key=RAW_APPLICATIONS, metadata={"file_of_no_day": path, "sha256": current[path]})
        for path in unplaced
    ]
    for path in unplaced:
        context.log.warning(f"{path}: belongs to no day (unexpected name or day outside the partitions)")
    context.log.info(f"{len(changed)} new or changed landing files in {len(days)} day(s)")
    return dg.SensorResult(
        run_requests=requests,
        asset_events=observations,
        cursor=json.dumps(current, sort_keys=True),
    )

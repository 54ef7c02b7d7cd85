"""The landing sensor: new or changed landing files trigger ingestion and validation."""

import hashlib
import json

import dagster as dg

from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.resources import Landing
from platform_assets.validate.assets import QUARANTINED_APPLICATIONS, VALIDATED_APPLICATIONS


def landing_changes(previous: dict, current: dict) -> list[str]:
    """Paths whose content hash is new or differs from the cursor's (removed files are not changes)."""
    return sorted(path for path, digest in current.items() if previous.get(path) != digest)


@dg.sensor(
    name="landing_files_sensor",
    asset_selection=dg.AssetSelection.assets(RAW_APPLICATIONS, VALIDATED_APPLICATIONS, QUARANTINED_APPLICATIONS),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests and validates when landing files are added or their content changes.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: Landing):
    """Requests one ingestion run per set of new or changed files; the cursor keeps each file's hash."""
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
    run_key = hashlib.sha256(json.dumps({p: current[p] for p in changed}, sort_keys=True).encode()).hexdigest()
    context.log.info(f"{len(changed)} new or changed landing files: {changed[:5]}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={"landing/changed_files": str(len(changed))})],
        cursor=json.dumps(current, sort_keys=True),
    )

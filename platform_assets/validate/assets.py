"""Validated and quarantined applications: every raw row lands in exactly one."""


import dagster as dg

from platform_assets.domain import PII_COLUMNS
from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.ingest.partitions import DAILY_PARTITIONS, PARTITION_COLUMN, partition_filter
from platform_assets.resources import PiiMasking, Warehouse

VALIDATED_APPLICATIONS = dg.AssetKey(["validated", "applications"])
QUARANTINED_APPLICATIONS = dg.AssetKey(["quarantine", "applications"])


def _valid_keys_of_other_days(con, keys: list[str]):
    """Application id -> day, for the valid rows of days outside ``keys`` (empty before the first run)."""
    import pandas as pd

    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'validated' AND table_name = 'applications'"
    ).fetchone()[0]
    if not exists:
        return pd.Series(dtype=object)
    where, params = partition_filter(keys)
    known = con.execute(
        f"SELECT application_id, {PARTITION_COLUMN} FROM validated.applications WHERE NOT ({where})", params
    ).df()
    return known.set_index("application_id")[PARTITION_COLUMN]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            VALIDATED_APPLICATIONS,
            deps=[RAW_APPLICATIONS],
            group_name="validate",
            kinds={"duckdb", "pandera"},
            description="Applications that pass every rule of ApplicationSchema, typed.",
        ),
        dg.AssetSpec(
            QUARANTINED_APPLICATIONS,
            deps=[RAW_APPLICATIONS],
            group_name="validate",
            kinds={"duckdb", "pandera"},
            description="Applications that failed a rule, with the reasons, source file and row.",
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def validated_applications(context: dg.AssetExecutionContext, warehouse: Warehouse, pii: PiiMasking):
    """Splits the run's days of ``raw.applications`` into ``validated`` and ``quarantine`` rows.

    The business key is unique across days: a row whose application id is
    already valid on another day is quarantined with that reason.
    """
    from platform_assets.validate.pii import mask_pii
    from platform_assets.validate.rules import quarantine_known_keys, split_valid_rows

    keys = list(context.partition_keys)
    where, params = partition_filter(keys)
    with warehouse.connect(read_only=True) as con:
        raw = con.execute(f"SELECT * FROM raw.applications WHERE {where}", params).df()
        known = _valid_keys_of_other_days(con, keys)
    result = quarantine_known_keys(split_valid_rows(raw), known)
    # Validate first (formats of emails and phones), then mask before anything is written.
    valid = mask_pii(result.valid, PII_COLUMNS, pii.salt)
    quarantined = mask_pii(result.quarantined, PII_COLUMNS, pii.salt)
    warehouse.replace_partitions(
        {"validated.applications": valid, "quarantine.applications": quarantined}, PARTITION_COLUMN, keys
    )
    context.log.info(f"{len(raw)} raw rows: {len(valid)} valid, {len(quarantined)} quarantined")
    rate = len(quarantined) / len(raw) if len(raw) else 0.0
    yield dg.MaterializeResult(
        asset_key=VALIDATED_APPLICATIONS,
        metadata={"dagster/row_count": len(valid), "raw_rows": len(raw), "days": len(keys)},
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINED_APPLICATIONS,
        metadata={
            "dagster/row_count": len(quarantined),
            "quarantine_rate": rate,
            "failures_by_rule": dg.MetadataValue.json(result.failure_counts),
        },
    )

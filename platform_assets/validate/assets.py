"""Validated and quarantined applications: every raw row lands in exactly one."""


import dagster as dg

from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.domain import PII_COLUMNS
from platform_assets.resources import PiiMasking, Warehouse

VALIDATED_APPLICATIONS = dg.AssetKey(["validated", "applications"])
QUARANTINED_APPLICATIONS = dg.AssetKey(["quarantine", "applications"])


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
)
def validated_applications(context: dg.AssetExecutionContext, warehouse: Warehouse, pii: PiiMasking):
    """Splits ``raw.applications`` into ``validated.applications`` and ``quarantine.applications``."""
    from platform_assets.validate.pii import mask_pii
    from platform_assets.validate.rules import split_valid_rows

    with warehouse.connect(read_only=True) as con:
        raw = con.execute("SELECT * FROM raw.applications").df()
    result = split_valid_rows(raw)
    # Validate first (formats of emails and phones), then mask before anything is written.
    valid = mask_pii(result.valid, PII_COLUMNS, pii.salt)
    quarantined = mask_pii(result.quarantined, PII_COLUMNS, pii.salt)
    warehouse.replace_tables({"validated.applications": valid, "quarantine.applications": quarantined})
    context.log.info(f"{len(raw)} raw rows: {len(valid)} valid, {len(quarantined)} quarantined")
    rate = len(quarantined) / len(raw) if len(raw) else 0.0
    yield dg.MaterializeResult(
        asset_key=VALIDATED_APPLICATIONS,
        metadata={"dagster/row_count": len(valid), "raw_rows": len(raw)},
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINED_APPLICATIONS,
        metadata={
            "dagster/row_count": len(quarantined),
            "quarantine_rate": rate,
            "failures_by_rule": dg.MetadataValue.json(result.failure_counts),
        },
    )

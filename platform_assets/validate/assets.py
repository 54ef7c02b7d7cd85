"""Validated and quarantined applications: every raw row lands in exactly one."""


import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.domain import PII_COLUMNS
from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.ingest.partitions import DAILY_PARTITIONS, PARTITION_COLUMN
from platform_assets.resources import PiiMasking, Warehouse

from platform_assets.keys import QUARANTINED_APPLICATIONS, VALIDATED_APPLICATIONS


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
    pool=WAREHOUSE_POOL,
)
def validated_applications(context: dg.AssetExecutionContext, warehouse: Warehouse, pii: PiiMasking):
    """Splits the run's days of ``raw.applications`` into ``validated`` and ``quarantine`` rows.

    The first copy of an application id (by application time, then file and
    row) is valid and later copies are quarantined, across all days: other
    days whose rows change side are rewritten in the same transaction.
    """
    from platform_assets.validate.days import QUARANTINE, VALID, validate_days
    from platform_assets.validate.pii import mask_pii

    keys = list(context.partition_keys)
    if pii.development_key:
        context.log.warning(
            "personal data is masked with the DEVELOPMENT key (PLATFORM_PROFILE=local, PII_HMAC_KEY unset): "
            "its tokens can be reversed; set PII_HMAC_KEY for real data"
        )
    with warehouse.connect(read_only=True) as con:
        outcome = validate_days(con, keys)
    # Validate first (formats of emails and phones), then mask before anything is written.
    valid = mask_pii(outcome.valid, PII_COLUMNS, pii.key)
    quarantined = mask_pii(outcome.quarantined, PII_COLUMNS, pii.key)
    warehouse.replace_partitions({VALID: valid, QUARANTINE: quarantined}, PARTITION_COLUMN, outcome.days)
    mine = valid[PARTITION_COLUMN].isin(keys), quarantined[PARTITION_COLUMN].isin(keys)
    n_valid, n_quarantined = int(mine[0].sum()), int(mine[1].sum())
    raw_rows = n_valid + n_quarantined
    context.log.info(f"{raw_rows} raw rows: {n_valid} valid, {n_quarantined} quarantined")
    if outcome.rewritten:
        context.log.warning(
            f"the duplicate policy rewrote {len(outcome.rewritten)} other day(s), whose rows changed side: "
            + ", ".join(outcome.rewritten)
        )
    rate = n_quarantined / raw_rows if raw_rows else 0.0
    yield dg.MaterializeResult(
        asset_key=VALIDATED_APPLICATIONS,
        metadata={
            "dagster/row_count": n_valid,
            "raw_rows": raw_rows,
            "days": len(keys),
            "rewritten_days": dg.MetadataValue.json(outcome.rewritten),
            "pii_key": pii.key_source,
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINED_APPLICATIONS,
        metadata={
            "dagster/row_count": n_quarantined,
            "quarantine_rate": rate,
            "failures_by_rule": dg.MetadataValue.json(outcome.failure_counts),
            "rewritten_days": dg.MetadataValue.json(outcome.rewritten),
            "pii_key": pii.key_source,
        },
    )

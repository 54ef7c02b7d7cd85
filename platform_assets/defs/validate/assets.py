"""A source's validated and quarantined rows: every raw row lands in exactly one."""


import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.declarations import UseCase
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS
from platform_assets.ingest.partitions import PARTITION_COLUMN
from platform_assets.keys import for_use_case
from platform_assets.resources import PiiMasking, Warehouse
from platform_assets.cost import with_cost


def build_validation_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/validated/<source>`` and ``<use case>/quarantine/<source>``, from one step per run."""
    keys, source = for_use_case(use_case), use_case.source

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                keys.validated,
                deps=[keys.raw],
                group_name=use_case.name,
                kinds={"duckdb", "pandera"},
                description=f"Rows of {source.name} that pass every rule of {source.schema.rpartition(':')[2]}, typed.",
            ),
            dg.AssetSpec(
                keys.quarantined,
                deps=[keys.raw],
                group_name=use_case.name,
                kinds={"duckdb", "pandera"},
                description=f"Rows of {source.name} that failed a rule, with the reasons, source file and row.",
            ),
        ],
        name=f"{use_case.name}__validate",
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def validated_rows(context: dg.AssetExecutionContext, warehouse: Warehouse, pii: PiiMasking):
        """Splits the run's days of ``raw.<source>`` into ``validated`` and ``quarantine`` rows.

        The first copy of a key (by event time, then file and row) is valid and
        later copies are quarantined, across all days when the source says keys
        are unique across days: other days whose rows change side are rewritten in
        the same transaction.
        """
        from platform_assets.ingest.load import batch_rows, day_batches
        from platform_assets.validate.days import raw_rows_by_day, validate_days
        from platform_assets.validate.pii import mask_pii

        partition_keys = list(context.partition_keys)
        if pii.development_key:
            context.log.warning(
                "personal data is masked with the DEVELOPMENT key (PLATFORM_PROFILE=local, PII_HMAC_KEY unset): "
                "its tokens can be reversed; set PII_HMAC_KEY for real data"
            )
        with warehouse.connect(read_only=True) as con:
            rows_by_day = raw_rows_by_day(con, partition_keys, source)
        # Batches of whole days in order: a day's outcome depends on other days only through the duplicate
        # policy, which reads what earlier batches wrote, so batches end as one pass over the range would.
        batches = day_batches(rows_by_day, batch_rows())
        n_valid = n_quarantined = 0
        failure_counts: dict[str, int] = {}
        rewritten: list[str] = []
        for batch in batches:
            with warehouse.connect(read_only=True) as con:
                outcome = validate_days(con, batch, source)
            # Validate first (formats of emails and phones), then mask before anything is written.
            valid = mask_pii(outcome.valid, source.pii, pii.key)
            quarantined = mask_pii(outcome.quarantined, source.pii, pii.key)
            warehouse.replace_partitions({source.validated_table: valid, source.quarantine_table: quarantined},
                                         PARTITION_COLUMN, outcome.days)
            n_valid += int(valid[PARTITION_COLUMN].isin(batch).sum())
            n_quarantined += int(quarantined[PARTITION_COLUMN].isin(batch).sum())
            for rule, count in outcome.failure_counts.items():
                failure_counts[rule] = failure_counts.get(rule, 0) + count
            rewritten += [d for d in outcome.rewritten if d not in partition_keys and d not in rewritten]
            if len(batches) > 1:
                context.log.info(f"validated {sum(rows_by_day[d] for d in batch)} rows of {batch[0]}...{batch[-1]}")
        raw_rows = n_valid + n_quarantined
        context.log.info(f"{raw_rows} raw rows: {n_valid} valid, {n_quarantined} quarantined "
                         f"({len(batches)} batch(es) of days)")
        if rewritten:
            context.log.warning(
                f"the duplicate policy rewrote {len(rewritten)} other day(s), whose rows changed side: "
                + ", ".join(rewritten)
            )
        rate = n_quarantined / raw_rows if raw_rows else 0.0
        yield dg.MaterializeResult(
            asset_key=keys.validated,
            metadata={
                "dagster/row_count": n_valid,
                "raw_rows": raw_rows,
                "days": len(partition_keys),
                "rewritten_days": dg.MetadataValue.json(rewritten),
                "batches": len(batches),
                "pii_key": pii.key_source,
            },
        )
        yield dg.MaterializeResult(
            asset_key=keys.quarantined,
            metadata={
                "dagster/row_count": n_quarantined,
                "quarantine_rate": rate,
                "failures_by_rule": dg.MetadataValue.json(failure_counts),
                "rewritten_days": dg.MetadataValue.json(rewritten),
                "pii_key": pii.key_source,
            },
        )

    return validated_rows

"""The raw asset of a source: each day's landing files loaded whole into the warehouse, a batch of days at a time."""


import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.declarations import UseCase
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS
from platform_assets.keys import for_use_case
from platform_assets.resources import Landing, Warehouse
from platform_assets.cost import with_cost


def build_raw_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/raw/<source>``: the source's landing files of each day, read whole into ``raw.<source>``."""

    @dg.asset(
        key=for_use_case(use_case).raw,
        group_name=use_case.name,
        kinds={"duckdb", "parquet"},
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        description=(
            f"{use_case.source.name} as they arrived in the landing files ({use_case.source.file_pattern}), one row per file row, "
            "partitioned by the day in the file name."
        ),
    )
    @with_cost
    def raw_rows(
        context: dg.AssetExecutionContext, landing: Landing, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        """Reads the landing files of the run's days into ``raw.<source>``, replacing those days only.

        Files that belong to no day (an unexpected name, a day outside the
        partitions) are recorded in ``raw.rejected_files`` on every run. The same
        files with the same content are a no-op: nothing is rewritten, and the data
        version (the files' content hash) stays the same.
        """
        from platform_assets.ingest.landing import (
            combined_hash,
            list_landing_files,
            partition_of,
            source_landing_url,
            unplaced_files,
        )
        from platform_assets.ingest.load import batch_rows, load_landing_days

        source = use_case.source
        use_case.check_columns()  # a declared column its schema lacks, or a numeric protected attribute, fails here
        keys = list(context.partition_keys)
        landing_url = source_landing_url(landing.url, source)
        urls = list_landing_files(landing_url)
        if not urls:
            raise dg.Failure(f"no landing files under {landing_url}; run `make data` first")
        files_of_day: dict[str, list[str]] = {}
        for url in urls:
            files_of_day.setdefault(partition_of(url, source), []).append(url)
        unplaced = unplaced_files(urls, source, DAILY_PARTITIONS.has_partition_key)
        loaded = load_landing_days(warehouse, source, keys, files_of_day, unplaced, batch_rows(), context.log.info)
        for reject in loaded.rejected:
            context.log.warning(f"rejected {reject.error}")
        unchanged = not loaded.rewritten_days
        if unchanged:
            context.log.info(f"the landing files of {len(keys)} day(s) are unchanged: nothing rewritten")
        version = combined_hash(loaded.accepted)
        rejected_in_days = len(loaded.rejected) - len(unplaced)
        context.log.info(
            f"{len(keys)} day(s): {loaded.rows} rows from {len(loaded.accepted)} files in {loaded.batches} batch(es); "
            f"rejected {rejected_in_days} files (+{len(unplaced)} that belong to no day)"
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "dagster/row_count": loaded.rows,
                "files": len(loaded.accepted),
                "rejected_files": len(loaded.rejected),
                "content_hash": version,
                "unchanged": unchanged,
                "days": len(keys),
                "days_rewritten": len(loaded.rewritten_days),
                "batches": loaded.batches,
                "days_without_files": sum(1 for k in keys if not loaded.rows_by_day.get(k)),
                "landing": landing_url,
            },
        )

    return raw_rows

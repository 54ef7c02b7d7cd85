"""The raw asset of a source: each day's landing files loaded whole into the warehouse."""


import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.declarations import Source, UseCase
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.keys import for_use_case
from platform_assets.resources import Landing, Warehouse
from platform_assets.warehouse import table_names
from platform_assets.cost import with_cost


def _stored_files(warehouse: Warehouse, source: Source, keys: list[str]) -> set[tuple] | None:
    """The (partition, path, content hash) of the files last ingested for ``keys``; ``None`` before the first run."""
    with warehouse.connect() as con:
        tables = table_names(con)
        if not {source.landing_files_table, source.rejected_files_table} <= tables:
            return None
        where, params = partition_filter(keys)
        rows = con.execute(
            f"SELECT {PARTITION_COLUMN}, path, sha256 FROM {source.landing_files_table} WHERE {where} "
            f"UNION ALL SELECT {PARTITION_COLUMN}, path, sha256 FROM {source.rejected_files_table} "
            f"WHERE {where} OR {PARTITION_COLUMN} IS NULL",
            [*params, *params],
        ).fetchall()
    return set(rows)


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
        import pandas as pd

        from platform_assets.ingest.landing import (
            combined_hash,
            list_landing_files,
            partition_of,
            read_landing,
            source_landing_url,
            unplaced_files,
        )

        source = use_case.source
        source.check_columns()  # a declaration naming a column its schema lacks fails here, naming both
        keys = list(context.partition_keys)
        landing_url = source_landing_url(landing.url, source)
        urls = list_landing_files(landing_url)
        if not urls:
            raise dg.Failure(f"no landing files under {landing_url}; run `make data` first")
        day_of = {url: partition_of(url, source) for url in urls}
        df, accepted, rejected = read_landing([u for u in urls if day_of[u] in keys], source)
        unplaced = unplaced_files(urls, source, DAILY_PARTITIONS.has_partition_key)
        df[PARTITION_COLUMN] = df["_source_file"].map(day_of)
        files = pd.DataFrame(
            [{"path": r.path, "sha256": r.sha256, "rows": r.rows, "extra_columns": ",".join(r.extra_columns),
              PARTITION_COLUMN: day_of[r.path]} for r in accepted],
            columns=["path", "sha256", "rows", "extra_columns", PARTITION_COLUMN],
        )
        rejects = pd.DataFrame(
            [{**r.__dict__, PARTITION_COLUMN: day_of[r.path]} for r in rejected]
            + [{**r.__dict__, PARTITION_COLUMN: None} for r in unplaced],
            columns=["path", "sha256", "error", PARTITION_COLUMN],
        )
        incoming = {(f[PARTITION_COLUMN], f["path"], f["sha256"]) for f in (*files.to_dict("records"), *rejects.to_dict("records"))}
        unchanged = _stored_files(warehouse, source, keys) == incoming
        if unchanged:
            context.log.info(f"the landing files of {len(keys)} day(s) are unchanged: nothing rewritten")
        else:
            warehouse.replace_partitions(
                {source.raw_table: df, source.landing_files_table: files, source.rejected_files_table: rejects},
                PARTITION_COLUMN, [*keys, None],
            )
        for reject in (*rejected, *unplaced):
            context.log.warning(f"rejected {reject.error}")
        version = combined_hash(accepted)
        context.log.info(
            f"{len(keys)} day(s): {len(df)} rows from {len(accepted)} files; rejected {len(rejected)} files "
            f"(+{len(unplaced)} that belong to no day)"
        )
        rows_by_day = df.groupby(PARTITION_COLUMN).size()
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "dagster/row_count": len(df),
                "files": len(accepted),
                "rejected_files": len(rejected) + len(unplaced),
                "content_hash": version,
                "unchanged": unchanged,
                "days": len(keys),
                "days_without_files": sum(1 for k in keys if k not in rows_by_day.index),
                "landing": landing_url,
            },
        )

    return raw_rows

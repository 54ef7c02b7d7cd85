"""The raw applications asset: landing files loaded whole into the warehouse."""


import dagster as dg

from platform_assets.resources import PlatformState, Warehouse

RAW_APPLICATIONS = dg.AssetKey(["raw", "applications"])


@dg.asset(
    key=RAW_APPLICATIONS,
    group_name="ingest",
    kinds={"duckdb", "parquet"},
    description="Loan applications as they arrived in the landing files, one row per file row.",
)
def raw_applications(
    context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Reads every landing file into ``raw.applications`` with its file and row number."""
    import pandas as pd

    from platform_assets.ingest import landing

    urls = landing.list_landing_files(str(state.paths.landing))
    if not urls:
        raise dg.Failure(f"no landing files under {state.paths.landing}; run `make data` first")
    df, records = landing.read_landing(urls)
    files = pd.DataFrame([r.__dict__ for r in records])
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute("CREATE OR REPLACE TABLE raw.applications AS SELECT * FROM df")
        con.execute("CREATE OR REPLACE TABLE raw.landing_files AS SELECT * FROM files")
    version = landing.combined_hash(records)
    context.log.info(f"ingested {len(df)} rows from {len(records)} files")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(df),
            "files": len(records),
            "content_hash": version,
            "landing": dg.MetadataValue.path(str(state.paths.landing)),
        },
    )

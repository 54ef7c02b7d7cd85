"""The raw applications asset: landing files loaded whole into the warehouse."""


import dagster as dg

from platform_assets.domain import COLUMNS
from platform_assets.resources import Landing, Warehouse

RAW_APPLICATIONS = dg.AssetKey(["raw", "applications"])


@dg.asset(
    key=RAW_APPLICATIONS,
    group_name="ingest",
    kinds={"duckdb", "parquet"},
    description="Loan applications as they arrived in the landing files, one row per file row.",
)
def raw_applications(
    context: dg.AssetExecutionContext, landing: Landing, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Reads every landing file into ``raw.applications`` with its file and row number."""
    import pandas as pd

    from platform_assets.ingest.landing import combined_hash, list_landing_files, read_landing

    urls = list_landing_files(landing.url)
    if not urls:
        raise dg.Failure(f"no landing files under {landing.url}; run `make data` first")
    df, accepted, rejected = read_landing(urls, COLUMNS)
    files = pd.DataFrame(
        [{"path": r.path, "sha256": r.sha256, "rows": r.rows, "extra_columns": ",".join(r.extra_columns)} for r in accepted],
        columns=["path", "sha256", "rows", "extra_columns"],
    )
    rejects = pd.DataFrame([r.__dict__ for r in rejected], columns=["path", "sha256", "error"])
    warehouse.replace_tables({"raw.applications": df, "raw.landing_files": files, "raw.rejected_files": rejects})
    for reject in rejected:
        context.log.warning(f"rejected {reject.error}")
    version = combined_hash(accepted)
    context.log.info(f"ingested {len(df)} rows from {len(accepted)} files; rejected {len(rejected)} files")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": len(df),
            "files": len(accepted),
            "rejected_files": len(rejected),
            "content_hash": version,
            "landing": landing.url,
        },
    )

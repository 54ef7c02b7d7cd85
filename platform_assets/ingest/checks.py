"""Checks on the raw applications: the files arrived whole, with their columns, and recently.

Each check looks at the days of the run it belongs to (every day when a check
runs on its own).
"""


import dagster as dg

from platform_assets.domain import COLUMNS
from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter, run_partition_keys
from platform_assets.resources import Warehouse


@dg.asset_check(asset=RAW_APPLICATIONS, blocking=True, description="Every expected column is present.")
def raw_applications_has_schema_columns(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Fails when a column of the landing schema is missing from the raw table."""
    with warehouse.connect(read_only=True) as con:
        present = {row[0] for row in con.execute("DESCRIBE raw.applications").fetchall()}
    missing = sorted(set(COLUMNS) - present)
    return dg.AssetCheckResult(passed=not missing, metadata={"missing_columns": ", ".join(missing) or "none"})


@dg.asset_check(asset=RAW_APPLICATIONS, description="Each file was read whole: table rows = sum of file rows.")
def raw_applications_files_read_whole(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Compares the table's row count per file with the count recorded when the file was read."""
    where, params = partition_filter(run_partition_keys(context), f"f.{PARTITION_COLUMN}")
    with warehouse.connect(read_only=True) as con:
        mismatches = con.execute(
            f"""
            SELECT f.path, f.rows, count(a._source_file) AS loaded
            FROM raw.landing_files f LEFT JOIN raw.applications a ON a._source_file = f.path
            WHERE {where}
            GROUP BY f.path, f.rows HAVING count(a._source_file) <> f.rows OR max(a._source_row) <> f.rows
            """,
            params,
        ).fetchall()
        files, rows = con.execute(f"SELECT count(*), sum(rows) FROM raw.landing_files f WHERE {where}", params).fetchone()
    return dg.AssetCheckResult(
        passed=not mismatches,
        metadata={"files": files, "rows": int(rows or 0), "files_not_whole": len(mismatches)},
    )


@dg.asset_check(
    asset=RAW_APPLICATIONS,
    description="Every landing file was accepted; rejected files are listed with their errors.",
)
def landing_files_all_accepted(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Warns (does not block) when files were rejected: the accepted ones still flow on."""
    where, params = partition_filter(run_partition_keys(context))
    with warehouse.connect(read_only=True) as con:
        rejected = con.execute(
            f"SELECT path, error FROM raw.rejected_files WHERE {where} OR {PARTITION_COLUMN} IS NULL ORDER BY path",
            params,
        ).fetchall()
        accepted = con.execute(f"SELECT count(*) FROM raw.landing_files WHERE {where}", params).fetchone()[0]
    return dg.AssetCheckResult(
        passed=not rejected,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "accepted_files": accepted,
            "rejected_files": len(rejected),
            "errors": dg.MetadataValue.md("\n".join(f"- {error}" for _, error in rejected) or "none"),
        },
    )


class FreshnessConfig(dg.Config):
    """How long after a day ends its partition may still be missing before the data counts as stale."""

    max_age_hours: float = 48.0


@dg.asset_check(
    asset=RAW_APPLICATIONS,
    description="The latest day in the warehouse ended recently: landing files keep arriving (warns when stale).",
)
def raw_applications_fresh(config: FreshnessConfig, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Compares the end of the latest ingested day (partition) with now."""
    import datetime as dt

    with warehouse.connect(read_only=True) as con:
        latest = con.execute(f"SELECT max({PARTITION_COLUMN}) FROM raw.applications").fetchone()[0]
    now = dt.datetime.now(dt.timezone.utc)
    if latest is None:
        age_hours = float("inf")
    else:
        day_end = dt.datetime.fromisoformat(latest).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
        age_hours = max(0.0, (now - day_end).total_seconds() / 3600)
    return dg.AssetCheckResult(
        passed=age_hours <= config.max_age_hours,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"latest_partition": str(latest), "hours_since_its_end": age_hours, "max_age_hours": config.max_age_hours},
    )

"""Checks on the raw applications: the files arrived whole and with their columns."""


import dagster as dg

from platform_assets.ingest.assets import RAW_APPLICATIONS
from platform_assets.resources import Warehouse
from platform_assets.domain import COLUMNS


@dg.asset_check(asset=RAW_APPLICATIONS, blocking=True, description="Every expected column is present.")
def raw_applications_has_schema_columns(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Fails when a column of the landing schema is missing from the raw table."""
    with warehouse.connect(read_only=True) as con:
        present = {row[0] for row in con.execute("DESCRIBE raw.applications").fetchall()}
    missing = sorted(set(COLUMNS) - present)
    return dg.AssetCheckResult(passed=not missing, metadata={"missing_columns": ", ".join(missing) or "none"})


@dg.asset_check(asset=RAW_APPLICATIONS, description="Each file was read whole: table rows = sum of file rows.")
def raw_applications_files_read_whole(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Compares the table's row count per file with the count recorded when the file was read."""
    with warehouse.connect(read_only=True) as con:
        mismatches = con.execute(
            """
            SELECT f.path, f.rows, count(a._source_file) AS loaded
            FROM raw.landing_files f LEFT JOIN raw.applications a ON a._source_file = f.path
            GROUP BY f.path, f.rows HAVING count(a._source_file) <> f.rows OR max(a._source_row) <> f.rows
            """
        ).fetchall()
        total = con.execute("SELECT count(*) FROM raw.applications").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not mismatches and total > 0,
        metadata={"rows": total, "files_not_whole": len(mismatches)},
    )


@dg.asset_check(
    asset=RAW_APPLICATIONS,
    description="Every landing file was accepted; rejected files are listed with their errors.",
)
def landing_files_all_accepted(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Warns (does not block) when files were rejected: the accepted ones still flow on."""
    with warehouse.connect(read_only=True) as con:
        rejected = con.execute("SELECT path, error FROM raw.rejected_files ORDER BY path").fetchall()
        accepted = con.execute("SELECT count(*) FROM raw.landing_files").fetchone()[0]
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
    """How old the newest application may be before the data counts as stale."""

    max_age_hours: float = 48.0


@dg.asset_check(
    asset=RAW_APPLICATIONS,
    description="The newest application is recent: landing files keep arriving (warns when stale).",
)
def raw_applications_fresh(config: FreshnessConfig, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Compares the newest application time with now."""
    import datetime as dt

    import pandas as pd

    with warehouse.connect(read_only=True) as con:
        newest = con.execute("SELECT max(CAST(application_ts AS TIMESTAMP)) FROM raw.applications").fetchone()[0]
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    age_hours = (now - pd.Timestamp(newest).to_pydatetime()).total_seconds() / 3600 if newest else float("inf")
    return dg.AssetCheckResult(
        passed=age_hours <= config.max_age_hours,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"newest_application": str(newest), "age_hours": age_hours, "max_age_hours": config.max_age_hours},
    )

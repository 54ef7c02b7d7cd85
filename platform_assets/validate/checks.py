"""Checks on validation: nothing lost, and the quarantine rate under its threshold."""


import dagster as dg

from platform_assets.domain import PII_COLUMNS
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter, run_partition_keys
from platform_assets.resources import Warehouse
from platform_assets.validate.assets import QUARANTINED_APPLICATIONS, VALIDATED_APPLICATIONS


class QuarantineGateConfig(dg.Config):
    """How much of a batch may be quarantined before downstream stages stop."""

    max_quarantine_rate: float = 0.05


def _count(con, table: str, where: str = "TRUE", params: list | None = None) -> int:
    return con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params or []).fetchone()[0]


@dg.asset_check(
    asset=VALIDATED_APPLICATIONS,
    additional_deps=[QUARANTINED_APPLICATIONS],
    description="Raw rows = validated rows + quarantined rows, and no row is in both.",
)
def validation_conserves_rows(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Counts rows on both sides of the split (for the run's days) and looks for rows on both."""
    keys = run_partition_keys(context)
    where, params = partition_filter(keys)
    where_v, _ = partition_filter(keys, f"v.{PARTITION_COLUMN}")
    with warehouse.connect(read_only=True) as con:
        raw = _count(con, "raw.applications", where, params)
        valid = _count(con, "validated.applications", where, params)
        quarantined = _count(con, "quarantine.applications", where, params)
        overlap = con.execute(
            "SELECT count(*) FROM validated.applications v JOIN quarantine.applications q "
            "ON v._source_file = q._source_file AND v._source_row = q._source_row "
            f"WHERE {where_v}",
            params,
        ).fetchone()[0]
    return dg.AssetCheckResult(
        passed=raw == valid + quarantined and overlap == 0,
        metadata={"raw": raw, "validated": valid, "quarantined": quarantined, "in_both": overlap},
    )


@dg.asset_check(
    asset=VALIDATED_APPLICATIONS,
    additional_deps=[QUARANTINED_APPLICATIONS],
    blocking=True,
    description="The share of quarantined rows is under the configured threshold (blocking).",
)
def quarantine_rate_under_threshold(
    context: dg.AssetCheckExecutionContext, config: QuarantineGateConfig, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Stops downstream stages when too much of any day's data failed validation."""
    where, params = partition_filter(run_partition_keys(context), f"r.{PARTITION_COLUMN}")
    with warehouse.connect(read_only=True) as con:
        days = con.execute(
            f"""
            SELECT r.{PARTITION_COLUMN} AS day, count(*) AS raw, coalesce(any_value(q.n), 0) AS quarantined
            FROM raw.applications r
            LEFT JOIN (SELECT {PARTITION_COLUMN}, count(*) AS n FROM quarantine.applications GROUP BY ALL) q
                ON q.{PARTITION_COLUMN} = r.{PARTITION_COLUMN}
            WHERE {where} GROUP BY r.{PARTITION_COLUMN} ORDER BY r.{PARTITION_COLUMN}
            """,
            params,
        ).df()
    days["rate"] = days["quarantined"] / days["raw"]
    over = days[days["rate"] > config.max_quarantine_rate]
    total_raw = int(days["raw"].sum())
    return dg.AssetCheckResult(
        # A day without rows (its only file rejected) quarantined nothing: the file check warns about it.
        passed=over.empty,
        metadata={
            "raw_rows": total_raw,
            "quarantine_rate": float(days["quarantined"].sum() / total_raw) if total_raw else 0.0,
            "worst_day": str(days.loc[days["rate"].idxmax(), "day"]) if total_raw else "none",
            "worst_day_rate": float(days["rate"].max()) if total_raw else 0.0,
            "days_over_threshold": dg.MetadataValue.md(
                "\n".join(f"- {r.day}: {r.rate:.1%} of {r.raw} rows" for r in over.itertuples()) or "none"
            ),
            "threshold": config.max_quarantine_rate,
        },
    )


@dg.asset_check(
    asset=QUARANTINED_APPLICATIONS,
    description="Every quarantined row says why and where it came from.",
)
def quarantine_rows_have_reasons(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Fails if a quarantined row lacks a reason, a source file or a row number."""
    where, params = partition_filter(run_partition_keys(context))
    with warehouse.connect(read_only=True) as con:
        missing = con.execute(
            f"SELECT count(*) FROM quarantine.applications WHERE ({where}) AND (coalesce(_quarantine_reasons, '') = '' "
            "OR _source_file IS NULL OR _source_row IS NULL)",
            params,
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=missing == 0, metadata={"rows_without_reason": missing})


@dg.asset_check(
    asset=VALIDATED_APPLICATIONS,
    additional_deps=[QUARANTINED_APPLICATIONS],
    blocking=True,
    description="Personal data (names, emails, phones) is masked in validated and quarantined rows.",
)
def pii_is_masked(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Counts personal-data cells that are not salted-hash tokens (in the run's days)."""
    from platform_assets.validate.pii import MASKED_PATTERN

    where, params = partition_filter(run_partition_keys(context))
    unmasked = {}
    with warehouse.connect(read_only=True) as con:
        for table in ("validated.applications", "quarantine.applications"):
            columns = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
            for column in (c for c in PII_COLUMNS if c in columns):
                unmasked[f"{table}.{column}"] = con.execute(
                    f"SELECT count(*) FROM {table} WHERE ({where}) AND {column} IS NOT NULL "
                    f"AND NOT regexp_full_match(CAST({column} AS VARCHAR), ?)",
                    [*params, MASKED_PATTERN],
                ).fetchone()[0]
    return dg.AssetCheckResult(passed=not any(unmasked.values()), metadata=unmasked)

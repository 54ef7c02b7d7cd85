"""Checks on validation: nothing lost, and the quarantine rate under its threshold."""


import dagster as dg

from platform_assets.domain import PII_COLUMNS
from platform_assets.resources import Warehouse
from platform_assets.validate.assets import QUARANTINED_APPLICATIONS, VALIDATED_APPLICATIONS


class QuarantineGateConfig(dg.Config):
    """How much of a batch may be quarantined before downstream stages stop."""

    max_quarantine_rate: float = 0.05


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@dg.asset_check(
    asset=VALIDATED_APPLICATIONS,
    additional_deps=[QUARANTINED_APPLICATIONS],
    description="Raw rows = validated rows + quarantined rows, and no row is in both.",
)
def validation_conserves_rows(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Counts rows on both sides of the split and looks for ids on both."""
    with warehouse.connect(read_only=True) as con:
        raw = _count(con, "raw.applications")
        valid = _count(con, "validated.applications")
        quarantined = _count(con, "quarantine.applications")
        overlap = con.execute(
            "SELECT count(*) FROM validated.applications v JOIN quarantine.applications q "
            "ON v._source_file = q._source_file AND v._source_row = q._source_row"
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
    config: QuarantineGateConfig, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Stops downstream stages when too much of the data failed validation."""
    with warehouse.connect(read_only=True) as con:
        raw = _count(con, "raw.applications")
        quarantined = _count(con, "quarantine.applications")
    rate = quarantined / raw if raw else 1.0
    return dg.AssetCheckResult(
        passed=rate <= config.max_quarantine_rate,
        metadata={"quarantine_rate": rate, "threshold": config.max_quarantine_rate},
    )


@dg.asset_check(
    asset=QUARANTINED_APPLICATIONS,
    description="Every quarantined row says why and where it came from.",
)
def quarantine_rows_have_reasons(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Fails if a quarantined row lacks a reason, a source file or a row number."""
    with warehouse.connect(read_only=True) as con:
        missing = con.execute(
            "SELECT count(*) FROM quarantine.applications WHERE coalesce(_quarantine_reasons, '') = '' "
            "OR _source_file IS NULL OR _source_row IS NULL"
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=missing == 0, metadata={"rows_without_reason": missing})


@dg.asset_check(
    asset=VALIDATED_APPLICATIONS,
    additional_deps=[QUARANTINED_APPLICATIONS],
    blocking=True,
    description="Personal data (names, emails, phones) is masked in validated and quarantined rows.",
)
def pii_is_masked(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Counts personal-data cells that are not salted-hash tokens."""
    from platform_assets.validate.pii import MASKED_PATTERN

    unmasked = {}
    with warehouse.connect(read_only=True) as con:
        for table in ("validated.applications", "quarantine.applications"):
            columns = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
            for column in (c for c in PII_COLUMNS if c in columns):
                unmasked[f"{table}.{column}"] = con.execute(
                    f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL "
                    f"AND NOT regexp_full_match(CAST({column} AS VARCHAR), ?)",
                    [MASKED_PATTERN],
                ).fetchone()[0]
    return dg.AssetCheckResult(passed=not any(unmasked.values()), metadata=unmasked)

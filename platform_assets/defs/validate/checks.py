"""Checks on validation: nothing lost, the quarantine rate under its threshold, no personal data in clear."""


import dagster as dg

from platform_assets.declarations import Source, UseCase
from platform_assets.defs.ingest.partitions import run_partition_keys
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.keys import for_use_case
from platform_assets.resources import Warehouse
from platform_assets.sql import quoted


class QuarantineGateConfig(dg.Config):
    """How much of a batch may be quarantined before downstream stages stop."""

    max_quarantine_rate: float = 0.05


def _checked_days(context, con, source: Source) -> list[str] | None:
    """The run's days plus every day the split tables hold (a run may rewrite other days); ``None``: all."""
    keys = run_partition_keys(context)
    if keys is None:
        return None
    stored = con.execute(
        f"SELECT {PARTITION_COLUMN} FROM {source.validated_table} UNION "
        f"SELECT {PARTITION_COLUMN} FROM {source.quarantine_table}"
    ).fetchall()
    return sorted({*keys, *(r[0] for r in stored if r[0] is not None)})


def _conservation(con, tables: tuple[str, str, str], days: list[str | None]) -> tuple:
    """For ``days`` (``None``: rows of no day): rows of raw, validated and quarantine, raw rows in neither split
    table, rows in both, split rows with no raw row, and the days whose counts differ."""
    named = [d for d in days if d is not None]
    conditions = ([f"{PARTITION_COLUMN} IN ({', '.join('?' for _ in named)})"] if named else []) + (
        [f"{PARTITION_COLUMN} IS NULL"] if None in days else [])
    where = " OR ".join(conditions) or "FALSE"
    key = "_source_file, _source_row"
    side = f"SELECT {PARTITION_COLUMN}, {key} FROM {{table}} WHERE {where}"
    raw, valid, quarantined = tables
    return con.execute(
        f"""
        WITH r AS ({side.format(table=raw)}), v AS ({side.format(table=valid)}), q AS ({side.format(table=quarantined)}),
             per_day AS (
                SELECT {PARTITION_COLUMN}, sum(raw) AS raw, sum(valid) AS valid, sum(quarantined) AS quarantined FROM (
                    SELECT {PARTITION_COLUMN}, 1 AS raw, 0 AS valid, 0 AS quarantined FROM r
                    UNION ALL SELECT {PARTITION_COLUMN}, 0, 1, 0 FROM v
                    UNION ALL SELECT {PARTITION_COLUMN}, 0, 0, 1 FROM q) GROUP BY ALL)
        SELECT
            (SELECT count(*) FROM r), (SELECT count(*) FROM v), (SELECT count(*) FROM q),
            (SELECT count(*) FROM (SELECT {key} FROM r EXCEPT ALL (SELECT {key} FROM v UNION ALL SELECT {key} FROM q))),
            (SELECT count(*) FROM (SELECT {key} FROM v INTERSECT SELECT {key} FROM q)),
            (SELECT count(*) FROM (SELECT {key} FROM v UNION ALL SELECT {key} FROM q EXCEPT ALL SELECT {key} FROM r)),
            (SELECT list({PARTITION_COLUMN} ORDER BY {PARTITION_COLUMN}) FROM per_day WHERE raw <> valid + quarantined)
        """,
        named * 3,
    ).fetchone()


def build_validation_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of ``<use case>/validated/<source>`` and ``<use case>/quarantine/<source>``."""
    keys, source = for_use_case(use_case), use_case.source

    @dg.asset_check(
        asset=keys.validated,
        additional_deps=[keys.quarantined],
        description="Per day, every raw row is in exactly one of validated and quarantine, and nothing else is.",
    )
    def validation_conserves_rows(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Matches rows by source file and row, per day, over the run's days and every day already split.

        Counts raw rows in neither table (lost), rows in both, rows of the split
        tables with no raw row (stale), and days whose counts differ.
        """
        from platform_assets.ingest.load import batch_rows, day_batches

        with warehouse.connect(read_only=True) as con:
            days = _checked_days(context, con, source)
            where, params = partition_filter(days)
            tables = (source.raw_table, source.validated_table, source.quarantine_table)
            # Matched a batch of days at a time (PLATFORM_BATCH_ROWS): a row belongs to one day in all three tables.
            by_day = dict(con.execute(
                f"SELECT {PARTITION_COLUMN}, count(*) FROM ("
                + " UNION ALL ".join(f"SELECT {PARTITION_COLUMN} FROM {t} WHERE {where}" for t in tables)
                + f") GROUP BY 1 ORDER BY 1 NULLS FIRST", params * 3).fetchall())
            totals, bad_days = [0] * 6, []
            for batch in day_batches(by_day, batch_rows()):
                found = _conservation(con, tables, batch)
                totals = [a + b for a, b in zip(totals, found[:6])]
                bad_days += list(found[6] or [])
            counts = (*totals, bad_days)
        raw, valid, quarantined, lost, in_both, stale, bad_days = counts
        bad_days = [str(d) for d in bad_days or []]
        return dg.AssetCheckResult(
            passed=raw == valid + quarantined and not (lost or in_both or stale or bad_days),
            metadata={
                "days_checked": len(days) if days is not None else "all",
                "raw": raw,
                "validated": valid,
                "quarantined": quarantined,
                "lost": lost,
                "in_both": in_both,
                "without_raw_row": stale,
                "days_not_conserved": dg.MetadataValue.json(bad_days),
            },
        )


    @dg.asset_check(
        asset=keys.validated,
        additional_deps=[keys.quarantined],
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
                FROM {source.raw_table} r
                LEFT JOIN (SELECT {PARTITION_COLUMN}, count(*) AS n FROM {source.quarantine_table} GROUP BY ALL) q
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
        asset=keys.validated,
        additional_deps=[keys.quarantined],
        blocking=True,
        description=(
            f"Personal data ({', '.join(source.pii) or 'none declared'}) is masked in validated and quarantined rows, "
            "and no quarantine reason contains a raw value of it."
        ),
    )
    def pii_is_masked(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        """Counts personal-data cells that are not HMAC tokens, and reasons that leak a raw value.

        Covers the run's days and every other day the split tables hold (a run
        may rewrite other days).
        """
        from platform_assets.validate.pii import count_leaked_reasons  # pandas: not at code-location load
        from platform_assets.validate.pii import MASKED_PATTERN

        unmasked = {}
        with warehouse.connect(read_only=True) as con:
            days = _checked_days(context, con, source)
            where, params = partition_filter(days)
            for table in (source.validated_table, source.quarantine_table):
                columns = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
                for column in (c for c in source.pii if c in columns):
                    unmasked[f"{table}.{column}"] = con.execute(
                        f"SELECT count(*) FROM {table} WHERE ({where}) AND {quoted(column)} IS NOT NULL "
                        f"AND NOT regexp_full_match(CAST({quoted(column)} AS VARCHAR), ?)",
                        [*params, MASKED_PATTERN],
                    ).fetchone()[0]
            leaked = {f"reasons_with_raw_{c}": n for c, n in count_leaked_reasons(con, source, days).items()}
        return dg.AssetCheckResult(
            passed=not any(unmasked.values()) and not any(leaked.values()), metadata={**unmasked, **leaked}
        )

    return [validation_conserves_rows, quarantine_rate_under_threshold, pii_is_masked]

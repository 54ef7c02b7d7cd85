"""Validating days of raw rows against what the warehouse holds: rules, then the duplicate policy.

A day's outcome is a function of the raw rows of every validated day, so
that one range run and day-by-day runs in any order end the same way. When
the run's days bring an earlier copy of a key, or no longer hold the copy
that was first, rows of another day change sides: that day is re-derived
whole from the source's raw table (so its values keep their parsed types) and
written in the same transaction as the run's days.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from platform_assets.declarations import Source
from platform_assets.ingest.landing import SOURCE_FILE, SOURCE_ROW
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.sql import quoted
from platform_assets.validate.duplicates import DUPLICATE_OF, first_copies, quarantine_duplicates
from platform_assets.validate.rules import split_source_rows
from platform_assets.warehouse import table_names


@dataclass
class DaysOutcome:
    """What to write for ``days``: the run's days plus the other days the duplicate policy changed."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    days: list[str]
    rewritten: list[str] = field(default_factory=list)
    failure_counts: dict[str, int] = field(default_factory=dict)


def _columns(con, table: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def _validated_days(con, tables: set[str], source: Source) -> list[str]:
    """Days that have been validated: they hold rows in the valid or the quarantine table."""
    parts = [f"SELECT DISTINCT {PARTITION_COLUMN} AS day FROM {t}"
             for t in (source.validated_table, source.quarantine_table) if t in tables]
    if not parts:
        return []
    return [r[0] for r in con.execute(" UNION ".join(parts)).fetchall() if r[0] is not None]


def _stored_keys(con, tables: set[str], days: list[str], source: Source) -> set[str]:
    """Keys of ``days`` that are valid, or quarantined only as a later copy (before this run)."""
    valid, quarantine = source.validated_table, source.quarantine_table
    where, params = partition_filter(days)
    parts, args = [], []
    if valid in tables:
        parts.append(f"SELECT CAST({quoted(source.key)} AS VARCHAR) FROM {valid} WHERE {where}")
        args += params
    if quarantine in tables and DUPLICATE_OF in _columns(con, quarantine):
        parts.append(
            f"SELECT CAST({quoted(source.key)} AS VARCHAR) FROM {quarantine} WHERE ({where}) "
            f"AND {DUPLICATE_OF} IS NOT NULL"
        )
        args += params
    return {r[0] for r in con.execute(" UNION ".join(parts), args).fetchall()} if parts else set()


def _copies_elsewhere(con, scope: list[str], validated: list[str], keys: set[str], source: Source) -> pd.DataFrame:
    """Raw rows of validated days outside ``scope`` whose business key is in ``keys``."""
    outside = [d for d in validated if d not in scope]
    if not outside or not keys:
        return pd.DataFrame()
    where, params = partition_filter(outside)
    con.register("_keys", pd.DataFrame({"k": sorted(keys)}, dtype=object))
    try:
        return con.execute(
            f"SELECT * FROM {source.raw_table} WHERE ({where}) AND CAST({quoted(source.key)} AS VARCHAR) IN "
            "(SELECT k FROM _keys)", params
        ).df()
    finally:
        con.unregister("_keys")


def _days_that_differ(con, tables: set[str], others: pd.DataFrame, source: Source) -> set[str]:
    """Days of ``others`` (rows with their wanted ``_duplicate_of``) whose stored side differs from the wanted one."""
    if others.empty:
        return set()
    valid, quarantine = source.validated_table, source.quarantine_table
    stored_first = f"q.{DUPLICATE_OF}" if DUPLICATE_OF in _columns(con, quarantine) else "NULL"
    con.register("_wanted", others[[PARTITION_COLUMN, SOURCE_FILE, SOURCE_ROW, DUPLICATE_OF]])
    try:
        rows = con.execute(
            f"""
            SELECT DISTINCT w.{PARTITION_COLUMN} FROM _wanted w
            LEFT JOIN {valid} v ON v.{SOURCE_FILE} = w.{SOURCE_FILE} AND v.{SOURCE_ROW} = w.{SOURCE_ROW}
            LEFT JOIN {quarantine} q ON q.{SOURCE_FILE} = w.{SOURCE_FILE} AND q.{SOURCE_ROW} = w.{SOURCE_ROW}
            WHERE CASE WHEN w.{DUPLICATE_OF} IS NULL THEN v.{SOURCE_ROW} IS NULL OR q.{SOURCE_ROW} IS NOT NULL
                       ELSE v.{SOURCE_ROW} IS NOT NULL OR {stored_first} IS DISTINCT FROM w.{DUPLICATE_OF} END
            """
        ).fetchall()
    finally:
        con.unregister("_wanted")
    return {r[0] for r in rows}


def _decide(con, tables: set[str], scope: list[str], validated: list[str], source: Source):
    """One pass: the outcome of the ``scope`` days, and the other days whose rows would change side."""
    schema, raw_table = source.schema_model(), source.raw_table
    where, params = partition_filter(scope)
    raw = con.execute(f"SELECT * FROM {raw_table} WHERE {where}", params).df() if raw_table in tables else pd.DataFrame()
    if raw.empty:
        raw = pd.DataFrame(columns=[*schema.to_schema().columns, SOURCE_FILE, SOURCE_ROW, PARTITION_COLUMN])
    result = split_source_rows(raw, source)
    columns = [source.key, source.event_time, SOURCE_FILE, SOURCE_ROW, PARTITION_COLUMN]
    if not source.unique_across_days:  # one valid row per key and day: no other day is ever involved
        first = first_copies(result.valid[columns], [source.key, PARTITION_COLUMN], source.event_time)
        return quarantine_duplicates(result, raw, first, source.key), set()
    keys = set(result.valid[source.key].astype(str)) | _stored_keys(con, tables, scope, source)
    elsewhere = _copies_elsewhere(con, scope, validated, keys, source)
    other_valid = split_source_rows(elsewhere, source).valid if len(elsewhere) else elsewhere
    candidates = pd.concat([result.valid[columns], other_valid[columns] if len(other_valid) else None], ignore_index=True)
    first = first_copies(candidates, source.key, source.event_time)
    mine = pd.Series(first.iloc[: len(result.valid)].to_numpy(), index=result.valid.index, dtype="string")
    others = candidates.iloc[len(result.valid):].assign(**{DUPLICATE_OF: first.iloc[len(result.valid):]})
    return quarantine_duplicates(result, raw, mine, source.key), _days_that_differ(con, tables, others, source)


def validate_days(con, days: list[str], source: Source) -> DaysOutcome:
    """Validates the raw rows of ``days`` and of every other day the duplicate policy changes.

    Args:
        con: A connection to the warehouse (reads only).
        days: The run's days.
        source: The declared source: its schema (the rules of a valid row), key, event time,
            personal data (never shown in a reason; the caller masks them) and tables.

    Returns:
        The valid and quarantined rows (unmasked) of every day in
        ``outcome.days``: the run's days, then the other days it rewrote.
    """
    tables = table_names(con)
    validated = _validated_days(con, tables, source)
    scope = list(days)
    while True:  # a rewritten day can bring more copies into play; a day joins the scope at most once
        result, differ = _decide(con, tables, scope, validated, source)
        extra = sorted(differ - set(scope))
        if not extra:
            break
        scope += extra
    return DaysOutcome(result.valid, result.quarantined, scope, scope[len(days):], result.failure_counts)


def raw_rows_by_day(con, days: list[str], source: Source) -> dict[str, int]:
    """The raw rows of each of ``days``, in the order given (0 for a day without rows, or before any raw table)."""
    counts = dict.fromkeys(days, 0)
    if source.raw_table in table_names(con):
        where, params = partition_filter(days)
        counts.update(con.execute(f"SELECT {PARTITION_COLUMN}, count(*) FROM {source.raw_table} WHERE {where} "
                                  f"GROUP BY 1", params).fetchall())
    return counts

"""Loading a run's landing days into the warehouse in batches of whole days, so memory follows a batch, not the run.

A range run of a hundred days reads one day's files at a time and writes a batch of days as soon as it holds
:func:`batch_rows` rows (a day larger than that is a batch of its own). Each batch replaces its days in one
transaction: a run killed half way leaves every day either as it was or as this run wrote it, and running it
again finishes the rest. A day whose files are exactly those already stored (same paths, same content) is not
rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from platform_assets import config
from platform_assets.declarations import Source
from platform_assets.ingest.landing import LandingFile, RejectedFile, read_landing
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.warehouse import table_names

FILE_COLUMNS = ["path", "sha256", "rows", "extra_columns", PARTITION_COLUMN]
REJECT_COLUMNS = ["path", "sha256", "error", PARTITION_COLUMN]


def batch_rows() -> int:
    """``PLATFORM_BATCH_ROWS``: how many rows a stage holds at once (a positive number)."""
    rows = config.get_int("PLATFORM_BATCH_ROWS")
    if rows < 1:
        raise config.ConfigurationError(f"PLATFORM_BATCH_ROWS={rows}: want a positive number of rows")
    return rows


def day_batches(rows_by_day: dict[str, int], limit: int) -> list[list[str]]:
    """The days in their order, grouped into consecutive batches of at most ``limit`` rows (a bigger day alone)."""
    batches: list[list[str]] = []
    held = limit  # forces a new batch for the first day
    for day, rows in rows_by_day.items():
        if held + rows > limit or not batches:
            batches.append([])
            held = 0
        batches[-1].append(day)
        held += rows
    return batches


@dataclass
class LoadedDays:
    """What a run loaded: every accepted and rejected file, rows by day, the days rewritten and left alone."""

    accepted: list[LandingFile] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    rows_by_day: dict[str, int] = field(default_factory=dict)
    rewritten_days: list[str] = field(default_factory=list)
    unchanged_days: list[str] = field(default_factory=list)
    batches: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())


def _stored_files(warehouse, source: Source, days: list[str | None]) -> dict[str | None, set[tuple]] | None:
    """The (path, content hash) of the files stored for each of ``days`` (``None``: files of no day); ``None``
    before the first run (its tables are created even when it brings no row)."""
    stored: dict[str | None, set[tuple]] = {day: set() for day in days}
    with warehouse.connect() as con:  # not read-only: before the first run the file does not exist yet
        tables = table_names(con)
        if not {source.landing_files_table, source.rejected_files_table} <= tables:
            return None
        where, params = partition_filter([d for d in days if d is not None])
        rows = con.execute(
            f"SELECT {PARTITION_COLUMN}, path, sha256 FROM {source.landing_files_table} WHERE {where} "
            f"UNION ALL SELECT {PARTITION_COLUMN}, path, sha256 FROM {source.rejected_files_table} "
            f"WHERE {where} OR {PARTITION_COLUMN} IS NULL",
            [*params, *params],
        ).fetchall()
    for day, path, sha in rows:
        stored.setdefault(day, set()).add((path, sha))
    return stored


def _files_frame(accepted: list[LandingFile], day: str) -> pd.DataFrame:
    return pd.DataFrame([{"path": r.path, "sha256": r.sha256, "rows": r.rows,
                          "extra_columns": ",".join(r.extra_columns), PARTITION_COLUMN: day} for r in accepted],
                        columns=FILE_COLUMNS)


def _rejects_frame(rejected: list[RejectedFile], day: str | None) -> pd.DataFrame:
    return pd.DataFrame([{**r.__dict__, PARTITION_COLUMN: day} for r in rejected], columns=REJECT_COLUMNS)


def load_landing_days(warehouse, source: Source, days: list[str], files_of_day: dict[str, list[str]],
                      unplaced: list[RejectedFile], limit: int,
                      log: Callable[[str], None] = lambda _: None) -> LoadedDays:
    """Replaces ``days`` of ``raw.<source>`` (and its file tables) with their landing files, a batch at a time.

    Args:
        warehouse: Where to write.
        source: The declared source.
        days: The run's days, in order; a day with no file is emptied.
        files_of_day: The landing files of each day.
        unplaced: Files that belong to no day; they replace the file-less rejects (``NULL`` day).
        limit: Rows a batch holds at most (a larger day is a batch of its own).
        log: Where to say what each batch did.
    """
    loaded = LoadedDays()
    stored = _stored_files(warehouse, source, [*days, None])
    frames: dict[str, list[pd.DataFrame]] = {source.raw_table: [], source.landing_files_table: [],
                                             source.rejected_files_table: []}
    pending: list[str] = []
    held = 0

    def write() -> None:
        nonlocal held
        if not pending:
            return
        batch = {table: pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
                 for table, parts in frames.items() if parts}
        warehouse.replace_partitions(batch, PARTITION_COLUMN, list(pending))
        loaded.batches += 1
        log(f"wrote {held} rows of {len(pending)} day(s), {pending[0]}...{pending[-1]}")
        loaded.rewritten_days += pending
        pending.clear()
        for parts in frames.values():
            parts.clear()
        held = 0

    for day in days:
        urls = files_of_day.get(day, [])
        rows, accepted, rejected = read_landing(urls, source)
        loaded.accepted += accepted
        loaded.rejected += rejected
        loaded.rows_by_day[day] = len(rows)
        incoming = {(r.path, r.sha256) for r in (*accepted, *rejected)}
        if stored is not None and incoming == stored.get(day, set()):  # the same files, the same content
            loaded.unchanged_days.append(day)
            continue
        if held and held + len(rows) > limit:
            write()
        rows[PARTITION_COLUMN] = day
        frames[source.raw_table].append(rows)
        frames[source.landing_files_table].append(_files_frame(accepted, day))
        frames[source.rejected_files_table].append(_rejects_frame(rejected, day))
        pending.append(day)
        held += len(rows)
        if held >= limit:
            write()
    write()
    if stored is None or {(r.path, r.sha256) for r in unplaced} != stored.get(None, set()):
        warehouse.replace_partitions({source.rejected_files_table: _rejects_frame(unplaced, None)},
                                     PARTITION_COLUMN, [None])
    loaded.rejected += unplaced
    return loaded

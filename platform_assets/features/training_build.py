"""Building the training set window by window: memory follows a window of days, not the history.

The labelled rows known by the cutoff are counted by day in the warehouse; consecutive days are grouped into
windows of at most ``PLATFORM_BATCH_ROWS`` rows (:func:`~platform_assets.ingest.load.day_batches`). Each window
is read, joined point-in-time by Feast and appended to a file; a second pass adds each row's split from its
position in time over all windows, which is what a single join of every row would give.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from platform_assets.declarations import UseCase
from platform_assets.features.training_file import SplitWriter
from platform_assets.features.training_set import (LABEL_FILE, LABEL_TIME, LINEAGE_COLUMNS, LINEAGE_METADATA_KEY,
                                                   ROW_FILE, files_trained_on, labelled_rows_sql)


@dataclass
class BuiltTrainingSet:
    """What :func:`build_training_set` wrote: rows (by split), labels, files, and what it left out."""

    as_of: pd.Timestamp | None
    since: str | None
    labelled_rows: int = 0
    rows: int = 0
    positives: int = 0
    without_features: int = 0
    windows: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)

    @property
    def positive_rate(self) -> float:
        return self.positives / self.rows if self.rows else float("nan")


def _day(use_case: UseCase) -> str:
    return f"CAST({use_case.source.event_time} AS DATE)"


def labelled_days(con, use_case: UseCase, labelled_sql: str, as_of, since: str | None) -> dict[str, int]:
    """The labelled rows known by ``as_of`` (from ``since`` on, when given), counted by day of event time."""
    where, params = [f"{LABEL_TIME} <= ?"], [as_of]
    if since is not None:
        where.append(f"{_day(use_case)} >= CAST(? AS DATE)")
        params.append(since)
    rows = con.execute(f"SELECT CAST({_day(use_case)} AS VARCHAR), count(*) FROM ({labelled_sql}) "
                       f"WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1", params).fetchall()
    return {day: int(n) for day, n in rows}


def _window_rows(con, use_case: UseCase, labelled_sql: str, as_of, since: str | None, days: list[str]) -> pd.DataFrame:
    where, params = [f"{LABEL_TIME} <= ?"], [as_of]
    if since is not None:
        where.append(f"{_day(use_case)} >= CAST(? AS DATE)")
        params.append(since)
    if days:
        where.append(f"{_day(use_case)} BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)")
        params += [days[0], days[-1]]
    else:  # no labelled row at all: Feast is still asked (with none), so the file has the features' columns
        where.append("FALSE")
    return con.execute(f"SELECT * FROM ({labelled_sql}) WHERE {' AND '.join(where)}", params).df()


def file_row_counts(rows: pd.DataFrame) -> Counter:
    """How many of ``rows`` each landing file (``("rows", path)``) and outcome file (``("labels", path)``) gave."""
    counts: Counter = Counter()
    for role, column in (("rows", ROW_FILE), ("labels", LABEL_FILE)):
        for path, n in rows[column].dropna().value_counts().items():
            counts[(role, path)] += int(n)
    return counts


def build_training_set(
    con, store, use_case: UseCase, *, since: str | None, min_rows: int, fractions: tuple[float, float],
    path: Path, window_rows: int, listings: pd.DataFrame, log: Callable[[str], None] = lambda _: None,
) -> BuiltTrainingSet:
    """Writes the training set of ``use_case`` to ``path``: every labelled row known by the newest labelled
    event time (from ``since`` on), with its point-in-time features, split by time.

    ``con``: a warehouse connection; ``store``: the Feast store; ``listings``: the files the warehouse listed
    (:func:`~platform_assets.features.training_set.file_listings`), recorded for the rows they gave.

    Raises:
        ValueError: a window (``since``) holds fewer than ``min_rows`` labelled rows.
        RuntimeError: Feast answered other rows than it was asked for.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_assets.features import feast_ops
    from platform_assets.ingest.load import day_batches
    from platform_assets.warehouse import table_names

    sql = labelled_rows_sql(use_case, use_case.monitor_table("outcomes") in table_names(con))
    as_of = con.execute(f"SELECT max({use_case.source.event_time}) FROM ({sql})").fetchone()[0]
    built = BuiltTrainingSet(as_of=None if as_of is None else pd.Timestamp(as_of), since=since)
    by_day = labelled_days(con, use_case, sql, as_of, since) if as_of is not None else {}
    built.labelled_rows = sum(by_day.values())
    if since is not None and built.labelled_rows < min_rows:
        raise ValueError(
            f"the training window from {since} holds {built.labelled_rows} labelled rows known by {as_of}; at "
            f"least {min_rows} are needed (config min_rows): wait for more outcomes or widen the window (config since)")
    windows = day_batches(by_day, window_rows) or [[]]
    key, label = use_case.source.key, use_case.label
    counts: Counter = Counter()
    unsplit = path.with_name(f".{path.name}.unsplit")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, schema = None, None
    try:
        for days in windows:
            labelled = _window_rows(con, use_case, sql, as_of, since, days)
            entities = feast_ops.entity_rows(labelled, built.as_of, use_case, keep=LINEAGE_COLUMNS)
            del labelled
            entities[label] = entities[label].astype("int64")  # known outcomes only: no nulls left
            # Feast gets the entity rows alone; the files they came from are put back on its answer, row for row.
            lineage = entities[[key, *LINEAGE_COLUMNS]]
            df = feast_ops.historical_features(store, entities.drop(columns=list(LINEAGE_COLUMNS)), use_case)
            if len(df) != len(lineage) or (df[key].to_numpy() != lineage[key].to_numpy()).any():
                raise RuntimeError("Feast answered other rows than it was asked for: the training set's lineage "
                                   "cannot be recorded")
            df[list(LINEAGE_COLUMNS)] = lineage[list(LINEAGE_COLUMNS)].to_numpy()
            # A row whose features the offline store does not hold yet (its day validated after the last feature
            # build) cannot be trained on: left out, counted and said, never a NaN the network would learn from.
            inputs = [c for c in df.columns if c not in use_case.never_features and c not in LINEAGE_COLUMNS]
            without = df[inputs].isna().any(axis=1)
            built.without_features += int(without.sum())
            df = df[~without]
            counts += file_row_counts(df)
            df = df.drop(columns=list(LINEAGE_COLUMNS))
            built.rows += len(df)
            built.positives += int(df[label].sum())
            table = pa.Table.from_pandas(df, preserve_index=False, schema=schema)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(unsplit, schema, coerce_timestamps="us", allow_truncated_timestamps=True)
            writer.write_table(table)
            built.windows += 1
            log(f"training set window {days[0] if days else '-'}..{days[-1] if days else '-'}: {len(df)} rows")
        writer.close()
        writer = None
        used = pd.DataFrame([{"role": r, "path": p, "rows_used": n} for (r, p), n in counts.items()],
                            columns=["role", "path", "rows_used"])
        built.files = files_trained_on(used, listings)
        manifest = {"since": since or "all", "labels_known_as_of": built.as_of.isoformat() if built.as_of else None,
                    "rows": built.rows, "files": built.files}
        built.split_rows = SplitWriter(path, {LINEAGE_METADATA_KEY: json.dumps(manifest).encode()}).write_from(
            unsplit, fractions)
    finally:
        if writer is not None:
            writer.close()
        unsplit.unlink(missing_ok=True)
    if built.without_features:
        log(f"{built.without_features} of {built.labelled_rows} labelled rows have no features in the offline store "
            "yet (built before their day was validated): left out of the training set")
    return built

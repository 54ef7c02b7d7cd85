"""The training set's Parquet file read and written in bounded pieces.

Every reader of the training set (training, evaluation, the checks, deployment's smoke rows) takes one split
batch by batch (:func:`split_batches`), a bounded random sample of it (:func:`sample_split`, whose size the
caller records) or its first rows, never the whole file. :class:`SplitWriter` writes a file of rows in time
order, built in pieces, with each row's split from its position over all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")
SPLIT_COLUMN = "split"
# Rows per Parquet row group and per batch read back: bounded pieces that stay fast to read.
BATCH_ROWS = 65_536


def sha256_of(source: str | Path | IO[bytes]) -> str:
    """The sha256 of a file (a path, or an open binary file read from its start and rewound)."""
    digest = hashlib.sha256()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return sha256_of(f)
    source.seek(0)
    for chunk in iter(lambda: source.read(1 << 20), b""):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def split_labels(start: int, count: int, total: int, fractions: tuple[float, float]) -> np.ndarray:
    """The splits of rows ``start .. start + count`` of ``total`` rows in time order: the first
    ``fractions[0]`` of all rows are train, up to ``fractions[1]`` validation, the rest test."""
    position = (start + np.arange(count, dtype=np.float64)) / max(total, 1)
    return np.where(position < fractions[0], SPLITS[0], np.where(position < fractions[1], SPLITS[1], SPLITS[2]))


class SplitWriter:
    """Rewrites an unsplit Parquet file of rows in time order with their split, batch by batch, and the manifest
    (what the rows were built from) in the file's metadata. The file appears whole (an atomic rename) or not at
    all."""

    def __init__(self, path: Path, metadata: dict[bytes, bytes]):
        self.path, self.metadata = path, metadata

    def write_from(self, unsplit: Path, fractions: tuple[float, float]) -> dict[str, int]:
        """Writes ``unsplit``'s rows with a split column; returns the rows of each split."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = pq.ParquetFile(unsplit)
        total = source.metadata.num_rows
        schema = source.schema_arrow.append(pa.field(SPLIT_COLUMN, pa.string()))
        schema = schema.with_metadata({**(source.schema_arrow.metadata or {}), **self.metadata})
        sizes = dict.fromkeys(SPLITS, 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        done = 0
        with pq.ParquetWriter(tmp, schema, coerce_timestamps="us", allow_truncated_timestamps=True) as writer:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                labels = split_labels(done, batch.num_rows, total, fractions)
                for name, count in zip(*np.unique(labels, return_counts=True)):
                    sizes[str(name)] += int(count)
                table = pa.Table.from_batches([batch]).append_column(SPLIT_COLUMN, pa.array(labels, pa.string()))
                writer.write_table(table.cast(schema), row_group_size=BATCH_ROWS)
                done += batch.num_rows
            if total == 0:
                writer.write_table(schema.empty_table())
        tmp.replace(self.path)
        return sizes


def _open(source):
    import pyarrow.parquet as pq

    return source if isinstance(source, pq.ParquetFile) else pq.ParquetFile(source)


def columns_of(source) -> list[str]:
    """The training set's columns (its split included)."""
    return list(_open(source).schema_arrow.names)


def split_batches(source, split: str | None, columns: list[str] | None = None,
                  batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The rows of one split (``None``: of all), in file order, as DataFrames of at most ``batch_rows`` rows.

    ``source``: a path, an open binary file or a ``pyarrow.parquet.ParquetFile``; ``columns``: those to read
    (default all but the split).
    """
    import pyarrow.compute as pc

    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r}: want one of {SPLITS} (or None: every row)")
    parquet = _open(source)
    wanted = [c for c in (columns or parquet.schema_arrow.names) if c != SPLIT_COLUMN]
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[*wanted, SPLIT_COLUMN]):
        chosen = batch if split is None else batch.filter(pc.equal(batch.column(SPLIT_COLUMN), split))
        if chosen.num_rows:
            yield chosen.select(wanted).to_pandas()


def split_rows(source) -> dict[str, int]:
    """How many rows each split holds (reads the split column alone)."""
    import pyarrow.compute as pc

    counts = dict.fromkeys(SPLITS, 0)
    for batch in _open(source).iter_batches(batch_size=BATCH_ROWS * 4, columns=[SPLIT_COLUMN]):
        found = pc.value_counts(batch.column(0))
        for value, count in zip(found.field("values").to_pylist(), found.field("counts").to_pylist()):
            counts[value] = counts.get(value, 0) + count
    return counts


def read_split(source, split: str | None, columns: list[str] | None = None) -> pd.DataFrame:
    """One split whole. For what is small by construction (a test's data); at scale use :func:`sample_split`."""
    parts = list(split_batches(source, split, columns))
    if parts:
        return pd.concat(parts, ignore_index=True)
    parquet = _open(source)
    wanted = [c for c in (columns or parquet.schema_arrow.names) if c != SPLIT_COLUMN]
    return parquet.schema_arrow.empty_table().select(wanted).to_pandas()


def sample_split(source, split: str | None, max_rows: int, seed: int = 0,
                 columns: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """A random sample of one split (``None``: of all rows), in file order: every row when the split holds at most ``max_rows``,
    else each row kept with probability ``max_rows / rows`` (so about ``max_rows`` rows, never more), the same
    rows for the same file and seed.

    Returns:
        The sampled rows and how many rows the split holds.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows={max_rows}: want a positive number of rows")
    parquet = _open(source)
    counts = split_rows(parquet)
    total = sum(counts.values()) if split is None else counts[split]
    if total <= max_rows:
        return read_split(parquet, split, columns), total
    rng = np.random.default_rng(seed)
    keep = max_rows / total
    parts, held = [], 0
    for batch in split_batches(parquet, split, columns):
        chosen = batch[rng.random(len(batch)) < keep]
        parts.append(chosen.head(max_rows - held))
        held += len(parts[-1])
    return pd.concat(parts, ignore_index=True), total


def first_rows(source, split: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of one split (fewer when it holds fewer), without reading the rest."""
    for batch in split_batches(source, split, batch_rows=max(rows, BATCH_ROWS)):
        return batch.head(rows).reset_index(drop=True)
    return read_split(source, split)


def column_max(source, column: str):
    """The largest value of one column (``None`` when it holds none), read batch by batch."""
    import pyarrow.compute as pc

    found = None
    for batch in _open(source).iter_batches(batch_size=BATCH_ROWS * 4, columns=[column]):
        value = pc.max(batch.column(0)).as_py()
        if value is not None and (found is None or value > found):
            found = value
    return found

"""Reading landing files: whole files, with their content hash and row numbers.

A file that cannot be taken (empty, unparseable, not UTF-8, missing columns,
an unexpected name) is rejected with an error that names the file and, where
there is one, the row and column; it never stops the other files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from typing import Callable

import fsspec
import fsspec.implementations.local
import pandas as pd

from platform_assets.declarations import Source

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"


@dataclass(frozen=True)
class LandingFile:
    """One landing file as ingested."""

    path: str
    sha256: str
    rows: int
    extra_columns: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RejectedFile:
    """A landing file that was not ingested, and why."""

    path: str
    sha256: str
    error: str


class LandingFileError(ValueError):
    """A landing file that cannot be read; the message names the file (and row, column)."""


def source_landing_url(landing_url: str, source: Source) -> str:
    """Where the files of ``source`` land: its folder under the landing root."""
    return f"{landing_url.rstrip('/')}/{source.landing_folder.strip('/')}" if source.landing_folder else landing_url


def list_landing_files(landing_url: str) -> list[str]:
    """Lists every file under ``landing_url`` (any fsspec URL), sorted by name.

    Hidden files (a writer's ``.name.tmp``) are skipped; everything else is
    listed, so that files with unexpected names are rejected visibly rather
    than ignored.
    """
    fs, root = fsspec.core.url_to_fs(landing_url)
    if not fs.exists(root):
        return []
    entries = fs.ls(root, detail=True)
    names = [e["name"] for e in entries if e["type"] == "file" and not e["name"].rsplit("/", 1)[-1].startswith(".")]
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    return sorted(n if local else fs.unstrip_protocol(n) for n in names)


def _decode_error(url: str, content: bytes, error: UnicodeDecodeError) -> LandingFileError:
    row = content[: error.start].count(b"\n")  # the header is line 1, data row 1 is line 2
    return LandingFileError(
        f"{url}: data row {row}: not UTF-8 (byte 0x{content[error.start]:02x} at offset {error.start})"
    )


def _parse(url: str, content: bytes) -> pd.DataFrame:
    if url.endswith(".parquet"):
        try:
            return pd.read_parquet(io.BytesIO(content))
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise LandingFileError(f"{url}: not a readable Parquet file: {exc}") from exc
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(url, content, exc) from exc
    try:
        if url.endswith(".csv"):
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=True)
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except pd.errors.EmptyDataError as exc:
        raise LandingFileError(f"{url}: no header and no rows") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise LandingFileError(f"{url}: cannot be parsed: {exc}") from exc


def read_bytes(url: str) -> bytes:
    """The whole content of ``url`` (any fsspec URL)."""
    with fsspec.open(url, "rb") as handle:
        return handle.read()


def file_sha256(url: str) -> str:
    """The content hash of one file: the data version of what it holds."""
    return hashlib.sha256(read_bytes(url)).hexdigest()


def _parse_nonempty(url: str, content: bytes) -> pd.DataFrame:
    if not content:
        raise LandingFileError(f"{url}: file is empty (0 bytes)")
    return _parse(url, content)


def count_file_rows(url: str, content: bytes) -> int:
    """Data rows of one landing file counted without the reader's parser: a check's independent count.

    Parquet: the row count in the file's footer metadata. CSV: records of Python's
    ``csv`` module (quoted newlines stay inside their record), blank lines left out,
    less the header. JSON lines: non-blank lines.

    Raises:
        ValueError: If the file is of no supported type or cannot be counted.
    """
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(io.BytesIO(content)).metadata.num_rows
    text = content.decode("utf-8")
    if url.endswith(".csv"):
        import csv

        # A field may be as long as the file (pandas has no limit); the module's default is 128 KiB.
        csv.field_size_limit(max(csv.field_size_limit(), len(content) + 1))
        records = sum(1 for record in csv.reader(io.StringIO(text, newline="")) if record)
        return max(records - 1, 0)
    if url.endswith(".jsonl"):
        return sum(1 for line in text.splitlines() if line.strip())
    raise ValueError(f"{url}: not a .parquet, .csv or .jsonl file")


def read_sample(url: str, max_rows: int) -> pd.DataFrame:
    """Reads up to ``max_rows`` rows of any supported file, as the landing reader parses it."""
    return _parse_nonempty(url, read_bytes(url)).head(max_rows)


def parse_landing_file(url: str, content: bytes, source: Source) -> tuple[pd.DataFrame, LandingFile]:
    """Parses one landing file's ``content`` whole; adds its path and 1-based data row numbers.

    Args:
        url: Path or fsspec URL of a ``.parquet``, ``.csv`` or ``.jsonl`` file named
            as ``source`` says (``<file_prefix>_YYYY-MM-DD.<ext>``).
        content: The file's bytes.
        source: The declared source: its schema's columns are the ones every file must
            have; others are dropped and recorded.

    Returns:
        The rows (required columns, ``_source_file``, ``_source_row``) and the file record.

    Raises:
        LandingFileError: If the file cannot be taken; the message names the file,
            and the row or columns where that applies.
    """
    name = url.rsplit("/", 1)[-1]
    if ".." in name or partition_of(url, source) is None:
        raise LandingFileError(f"{url}: unexpected file name (want {source.file_pattern})")
    required_columns = source.columns
    df = _parse_nonempty(url, content)
    missing = [c for c in required_columns if c not in df.columns]
    if missing:
        hint = " (one column only: wrong delimiter?)" if len(df.columns) == 1 else ""
        raise LandingFileError(f"{url}: missing columns {missing}{hint}")
    extra = tuple(c for c in df.columns if c not in required_columns)
    df = df[list(required_columns)].copy()
    df[SOURCE_FILE] = url
    df[SOURCE_ROW] = range(1, len(df) + 1)
    return df, LandingFile(url, hashlib.sha256(content).hexdigest(), len(df), extra)


def read_landing(urls: list[str], source: Source) -> tuple[pd.DataFrame, list[LandingFile], list[RejectedFile]]:
    """Reads every file in ``urls`` once as files of ``source``; returns the accepted rows, and both file lists."""
    frames, accepted, rejected = [], [], []
    for url in urls:
        content = read_bytes(url)
        try:
            df, record = parse_landing_file(url, content, source)
        except LandingFileError as exc:
            rejected.append(RejectedFile(url, hashlib.sha256(content).hexdigest(), str(exc)))
            continue
        frames.append(df)
        accepted.append(record)
    columns = [*source.columns, SOURCE_FILE, SOURCE_ROW]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return rows, accepted, rejected


def partition_of(url: str, source: Source) -> str | None:
    """The day (``YYYY-MM-DD``) a file of ``source`` belongs to, from its name; ``None`` for a name that does not fit."""
    match = source.file_name.match(url.rsplit("/", 1)[-1])
    if not match:
        return None
    try:
        dt.date.fromisoformat(match["day"])
    except ValueError:
        return None
    return match["day"]


def unplaced_files(urls: list[str], source: Source, is_partition: Callable[[str], bool]) -> list[RejectedFile]:
    """Rejects the files that belong to no partition: an unexpected name, or a day outside the partitions."""
    rejected = []
    for url in urls:
        day = partition_of(url, source)
        if day is not None and is_partition(day):
            continue
        if day is None:
            error = f"{url}: unexpected file name (want {source.file_pattern})"
        else:
            error = f"{url}: day {day} is outside the daily partitions (not yet, or before their start)"
        rejected.append(RejectedFile(url, file_sha256(url), error))
    return rejected


def combined_hash(records: list[LandingFile]) -> str:
    """One hash over all files' names and content hashes: the raw data version."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path.rsplit('/', 1)[-1]}:{record.sha256}\n".encode())
    return digest.hexdigest()


def record_first_landed_day(landing_url: str, root: str | Path | None = None) -> tuple[str, Path] | None:
    """Makes the daily partitions start at the first day that has a landing file of any declared source.

    Returns the day and the file it is recorded in; ``None`` when no landing file names a day.
    """
    from platform_assets.declared import use_cases
    from platform_assets.ingest.partitions import record_partitions_start

    days = sorted(d for s in {u.source for u in use_cases()}
                  for u in list_landing_files(source_landing_url(landing_url, s)) if (d := partition_of(u, s)))
    return (days[0], record_partitions_start(days[0], root)) if days else None

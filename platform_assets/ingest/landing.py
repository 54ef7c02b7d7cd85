"""Reading landing files: whole files, with their content hash and row numbers."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import fsspec
import pandas as pd

SUPPORTED_SUFFIXES = (".parquet", ".csv", ".jsonl")
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"


@dataclass(frozen=True)
class LandingFile:
    """One landing file as ingested."""

    path: str
    sha256: str
    rows: int


class LandingFileError(ValueError):
    """A landing file that cannot be read; the message names the file."""


def list_landing_files(landing_url: str, prefix: str = "applications_") -> list[str]:
    """Lists data files under ``landing_url`` (any fsspec URL), sorted by name.

    Hidden files (such as a writer's ``.name.tmp``) are skipped.
    """
    fs, root = fsspec.core.url_to_fs(landing_url)
    if not fs.exists(root):
        return []
    names = [p for p in fs.ls(root, detail=False) if p.rsplit("/", 1)[-1].startswith(prefix)]
    return sorted(p for p in names if p.endswith(SUPPORTED_SUFFIXES))


def read_landing_file(url: str) -> tuple[pd.DataFrame, LandingFile]:
    """Reads one landing file whole; adds its path and 1-based row numbers.

    Args:
        url: Path or fsspec URL of a ``.parquet``, ``.csv`` or ``.jsonl`` file.

    Returns:
        The rows (with ``_source_file`` and ``_source_row``) and the file record.

    Raises:
        LandingFileError: If the file is empty or cannot be parsed.
    """
    with fsspec.open(url, "rb") as handle:
        content = handle.read()
    if not content:
        raise LandingFileError(f"{url}: file is empty (0 bytes)")
    buffer = io.BytesIO(content)
    try:
        if url.endswith(".parquet"):
            df = pd.read_parquet(buffer)
        elif url.endswith(".csv"):
            df = pd.read_csv(buffer)
        else:
            df = pd.read_json(buffer, lines=True)
    except Exception as exc:  # the parsers raise many types; one clear error names the file
        raise LandingFileError(f"{url}: cannot be parsed: {exc}") from exc
    df[SOURCE_FILE] = url
    df[SOURCE_ROW] = range(1, len(df) + 1)
    return df, LandingFile(url, hashlib.sha256(content).hexdigest(), len(df))


def read_landing(urls: list[str]) -> tuple[pd.DataFrame, list[LandingFile]]:
    """Reads every file in ``urls`` into one DataFrame, in order."""
    frames, records = [], []
    for url in urls:
        df, record = read_landing_file(url)
        frames.append(df)
        records.append(record)
    if not frames:
        return pd.DataFrame(), []
    return pd.concat(frames, ignore_index=True), records


def combined_hash(records: list[LandingFile]) -> str:
    """One hash over all files' names and content hashes: the raw data version."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path.rsplit('/', 1)[-1]}:{record.sha256}\n".encode())
    return digest.hexdigest()

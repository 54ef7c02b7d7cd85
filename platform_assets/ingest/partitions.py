"""Daily partitions of the landing data: one partition per event day (UTC).

A landing file named ``<file_prefix>_YYYY-MM-DD.<ext>`` (see the source declaration) belongs to the partition
``YYYY-MM-DD``. Partitions run through today, so that a file for today can be
ingested as soon as it lands, and start at the first of:

1. ``PLATFORM_PARTITIONS_START`` (``YYYY-MM-DD``), when set;
2. the first landed day recorded under the state root
   (``$PLATFORM_HOME/partitions_start``), which ``python -m platform_assets
   generate`` (``make data``) writes, so that ``make ui`` after ``make demo``
   shows the demo's days rather than hundreds of "missing" ones;
3. 2025-01-01.

The start is read when the code location loads; a file for a day before it
is rejected with that reason, never dropped silently. The Dagster partitions
definition is :data:`platform_assets.defs.ingest.partitions.DAILY_PARTITIONS`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from platform_assets import config, settings

PARTITIONS_START_ENV = "PLATFORM_PARTITIONS_START"
PARTITIONS_START_FILE = "partitions_start"
DEFAULT_START = "2025-01-01"
PARTITION_COLUMN = "_partition"


def partitions_start(root: str | Path | None = None) -> str:
    """The first day of the daily partitions (see the module docstring for the order of sources).

    Raises:
        ValueError: If the variable or the recorded file holds something other than a ``YYYY-MM-DD`` day.
    """
    value = config.get(PARTITIONS_START_ENV)
    source = PARTITIONS_START_ENV
    recorded = settings.paths(root).root / PARTITIONS_START_FILE
    if not value and recorded.is_file():
        value, source = recorded.read_text().strip(), str(recorded)
    if not value:
        return DEFAULT_START
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise ValueError(f"{source}: {value!r} is not a day (want YYYY-MM-DD)") from exc


def record_partitions_start(first_day: str, root: str | Path | None = None) -> Path:
    """Records ``first_day`` as the partitions' start under the state root; returns the file."""
    path = settings.paths(root).root / PARTITIONS_START_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dt.date.fromisoformat(first_day).isoformat() + "\n")
    return path


def partition_filter(keys: list[str] | None, column: str = PARTITION_COLUMN) -> tuple[str, list[str]]:
    """A SQL condition (with its parameters) that keeps the rows of ``keys``; all rows for ``None``."""
    if keys is None:
        return "TRUE", []
    if not keys:
        return "FALSE", []
    return f"{column} IN ({', '.join('?' for _ in keys)})", list(keys)

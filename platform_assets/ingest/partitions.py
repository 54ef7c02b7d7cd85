"""Daily partitions of the landing data: one partition per application day (UTC).

A landing file named ``applications_YYYY-MM-DD.<ext>`` belongs to the partition
``YYYY-MM-DD``. Partitions start at ``PLATFORM_PARTITIONS_START`` (default
2025-01-01) and run through today, so that a file for today can be ingested as
soon as it lands.
"""

import os

import dagster as dg

PARTITIONS_START_ENV = "PLATFORM_PARTITIONS_START"
PARTITION_COLUMN = "_partition"

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(PARTITIONS_START_ENV, "2025-01-01"),
    end_offset=1,
    timezone="UTC",
)


def run_partition_keys(context) -> list[str] | None:
    """The partition keys a run or check works on; ``None`` when it targets no partition (all of them)."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return None


def partition_filter(keys: list[str] | None, column: str = PARTITION_COLUMN) -> tuple[str, list[str]]:
    """A SQL condition (with its parameters) that keeps the rows of ``keys``; all rows for ``None``."""
    if keys is None:
        return "TRUE", []
    if not keys:
        return "FALSE", []
    return f"{column} IN ({', '.join('?' for _ in keys)})", list(keys)

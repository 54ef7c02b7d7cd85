"""The daily partitions of every use case's landing data, raw and validated tables and inference log.

The start day and the SQL filter are plain functions in :mod:`platform_assets.ingest.partitions`.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.ingest.partitions import partitions_start

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partitions_start(),
    end_offset=1,
    timezone="UTC",
)


def run_partition_keys(context) -> list[str] | None:
    """The partition keys a run or check works on; ``None`` when it targets no partition (all of them)."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return None

"""Loading the online store: what changed since the last load, where to start, and windows of days to load in.

Feast's ``materialize`` reads each view's newest row per entity over a time range and writes it to the
online store; here it goes a window of days at a time (:func:`materialize_windows`), so memory follows a
window, not the data.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from platform_assets.declarations import UseCase
from platform_assets.features.feast_ops import _naive_utc, _release_ibis_backend, online_views

if TYPE_CHECKING:
    import duckdb
    import feast


def earliest_change(
    con: "duckdb.DuckDBPyConnection", data_dir: Path, tables: tuple[str, ...], schema: str = "features"
) -> dt.datetime | None:
    """The oldest event time of a row of ``tables`` that the last export does not hold as it is now.

    New rows, late rows of an old day (a backfilled partition) and rows whose
    values changed all count; so materializing from this time on brings every
    change online, however old its event time. Call before :func:`export_marts`.

    Returns:
        That time; the oldest event time of all when a mart was never exported;
        ``None`` when the marts equal their last export.
    """
    times = []
    for table in tables:
        previous = data_dir / f"{table}.parquet"
        if previous.exists():
            query = (
                f"SELECT min(event_timestamp) FROM (SELECT * FROM {schema}.{table} "
                f"EXCEPT SELECT * FROM read_parquet('{previous}'))"
            )
        else:
            query = f"SELECT min(event_timestamp) FROM {schema}.{table}"
        times.append(con.execute(query).fetchone()[0])
    times = [t for t in times if t is not None]
    return min(times) if times else None


def materialized_until(store: "feast.FeatureStore", use_case: UseCase) -> dict[str, dt.datetime | None]:
    """How far each feature view the model server reads online has been materialized (``None``: never)."""
    return {view.name: view.most_recent_end_time for view in online_views(store, use_case)}


def incremental_start(
    changed_since: dt.datetime | None, until: dict[str, dt.datetime | None], oldest: dt.datetime, newest: dt.datetime
) -> dt.datetime | None:
    """Where the next materialization starts: the older of the first change and the online horizon.

    Args:
        changed_since: From :func:`earliest_change`.
        until: From :func:`materialized_until`.
        oldest: The oldest event time of the marts (where a view never materialized starts).
        newest: The newest event time of the marts.

    Returns:
        The start, or ``None`` when the online store already holds everything.
    """
    if not until or any(t is None for t in until.values()):
        return oldest
    horizon = min(_naive_utc(t) for t in until.values())
    candidates = [t for t in (changed_since, horizon if horizon <= newest else None) if t is not None]
    return min(candidates) if candidates else None


def materialize_range(store: "feast.FeatureStore", start: dt.datetime, end: dt.datetime) -> None:
    """Loads the latest feature values between ``start`` and ``end`` into the online store."""
    store.materialize(start_date=start, end_date=end)
    _release_ibis_backend()


def rows_by_day(con: "duckdb.DuckDBPyConnection", marts: tuple[str, ...], since: dt.datetime,
                schema: str = "features") -> dict[dt.date, int]:
    """Rows of ``marts`` per event day from ``since`` on, in day order."""
    union = " UNION ALL ".join(f"SELECT event_timestamp FROM {schema}.{m}" for m in marts)
    rows = con.execute(f"SELECT CAST(event_timestamp AS DATE) AS day, count(*) FROM ({union}) "
                       "WHERE event_timestamp >= ? GROUP BY 1 ORDER BY 1", [since]).fetchall()
    return dict(rows)


def materialize_windows(start: dt.datetime, end: dt.datetime, day_rows: dict[dt.date, int],
                        limit: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """``start``..``end`` cut at day boundaries into consecutive windows of at most ``limit`` rows (a bigger day
    alone), so that materializing holds one window's rows. Windows go forward in time: a later window's value
    of an entity overwrites an earlier one's, and the online store ends with each entity's latest."""
    from platform_assets.ingest.load import day_batches

    batches = day_batches({d: n for d, n in day_rows.items()}, limit)
    if len(batches) <= 1:
        return [(start, end)]
    cuts = [dt.datetime.combine(batch[0], dt.time()) for batch in batches[1:]]
    edges = [start, *(c for c in cuts if start < c < end), end]
    return list(zip(edges[:-1], edges[1:]))

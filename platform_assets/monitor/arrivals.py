"""When inference-log and outcome files of a day have settled, and how many labels are new: what the sensors decide on."""

from __future__ import annotations

import datetime as dt
import hashlib

from platform_assets.declarations import UseCase
from platform_assets.sql import quoted


def new_labels_since(con, labels_known_as_of: str | None, use_case: UseCase) -> int:
    """Labels known now that a training set built when labels were known up to ``labels_known_as_of`` lacked."""
    from platform_assets.warehouse import table_names

    source = use_case.source
    tables = table_names(con)
    if source.validated_table not in tables:
        return 0
    label_time = quoted(source.label_time or source.event_time)
    newest = f"(SELECT max({quoted(source.event_time)}) FROM {source.validated_table})"
    since = f"{label_time} > CAST(? AS TIMESTAMP)" if labels_known_as_of else "TRUE"
    params = [labels_known_as_of] if labels_known_as_of else []
    count = con.execute(
        f"SELECT count(*) FROM {source.validated_table} WHERE {quoted(use_case.label)} IS NOT NULL AND {since} "
        f"AND {label_time} <= {newest}", params).fetchone()[0]
    outcomes = use_case.monitor_table("outcomes")
    if source.label_time and outcomes in tables:
        count += con.execute(f"SELECT count(*) FROM {outcomes} WHERE {since} AND {label_time} <= {newest}",
                             params).fetchone()[0]
    return int(count)



def partition_problem(day: str, first: str, last: str | None) -> str | None:
    """Why the day a file is named for is not one of the daily partitions ``first``..``last``; ``None`` when it is.

    A day after ``last`` (today) may become one: a file is never dropped for it, only not ingested yet.
    """
    try:
        is_day = dt.date.fromisoformat(day).isoformat() == day
    except ValueError:
        is_day = False
    if not is_day:
        return "not a day (YYYY-MM-DD)"
    if day < first:
        return f"before the first partition {first}"
    if last is None or day > last:  # None: the first partition is still to come
        return f"after today's partition {last}" if last else "after today: no partition has come yet"
    return None


def settled_days(now: dict[str, str], previous: dict[str, str], ingested: dict[str, str]) -> list[str]:
    """Days whose log files look the same as on the last tick and differ from what was ingested.

    Args:
        now: Day -> signature of its files (names, sizes, mtimes) now.
        previous: The same on the previous tick.
        ingested: Day -> signature of the files the last requested run read.
    """
    return sorted(d for d, sig in now.items() if previous.get(d) == sig and ingested.get(d) != sig)



def file_signatures(days: list[str], files_of) -> dict[str, str]:
    """Day -> a short signature of its files (names, sizes, mtimes): it changes when a file is added or rewritten.

    Args:
        days: The days that have files.
        files_of: Day -> that day's file paths.
    """
    out = {}
    for day in days:
        parts = []
        for path in files_of(day):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed since it was listed: the next tick sees the change
                continue
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
        # A name's bytes as they are, even those that are not UTF-8.
        out[day] = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return out



def day_signatures(inference_dir) -> dict[str, str]:
    """Day -> a signature of the server's log files of that day."""
    from pathlib import Path

    from platform_assets.monitor.logs import day_files, logged_days

    return file_signatures(logged_days(Path(inference_dir)), lambda day: day_files(Path(inference_dir), day))



def outcome_day_signatures(outcomes_dir) -> dict[str, str]:
    """Day -> a signature of that day's outcome file."""
    from pathlib import Path

    from platform_assets.monitor.outcomes import day_files, landed_days

    return file_signatures(landed_days(Path(outcomes_dir)), lambda day: day_files(Path(outcomes_dir), day))

"""What the landing sensor decides, as plain functions: which files have settled, which days need a run.

Each source answers what it knows best:

- the landing location: each file's size and modification time, and, once
  they stopped changing, its content hash;
- the warehouse: the files already ingested for each day, by any route (the
  sensor, ``make materialize``, a backfill): the source's landing-files and
  rejected-files tables;
- the Dagster instance: the runs the sensor requested for a day's current
  files (found by their tags), and whether one of them failed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import dagster as dg

from platform_assets.warehouse import table_names

# A day is tried this many times for the same files; then the sensor waits for the files to change.
DEFAULT_MAX_ATTEMPTS = 3

REQUEST = "request"
WAIT = "wait"
DONE = "done"
GIVE_UP = "give_up"


def stat_landing_files(landing_url: str) -> dict[str, dict]:
    """``{path: {"size", "mtime"}}`` of the landing files (the names ``list_landing_files`` gives).

    ``mtime`` is the file system's modification time where it keeps one
    (local files, memory, S3's ``LastModified``, GCS's ``updated``), else ``None``.
    """
    import fsspec

    from platform_assets.ingest.landing import list_landing_files

    fs, _ = fsspec.core.url_to_fs(landing_url)
    stats = {}
    for path in list_landing_files(landing_url):
        info = fs.info(path)
        stats[path] = {"size": info.get("size"), "mtime": _mtime(fs, path, info)}
    return stats


def _mtime(fs, path: str, info: dict) -> float | None:
    for key in ("mtime", "LastModified", "updated", "last_modified"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):  # a datetime
            return value.timestamp()
        try:
            return float(value)
        except (TypeError, ValueError):
            break  # a text date: ask the file system below
    try:
        return fs.modified(path).timestamp()
    except (NotImplementedError, AttributeError, OSError, ValueError):
        return None


def settle(
    previous: dict[str, dict], current: dict[str, dict], sha256: Callable[[str], str]
) -> tuple[dict[str, str], dict[str, dict]]:
    """Splits off the files whose size and mtime did not change since the previous tick.

    A file seen for the first time, or whose size or mtime changed, may still
    be being written: it waits for the next tick. Settled files get their
    content hash (kept from the previous tick while size and mtime stay the
    same, except where the file system keeps no mtime).

    Returns:
        The settled files' ``{path: sha256}``, and the new state to keep for the next tick.
    """
    settled, state = {}, {}
    for path, stat in current.items():
        before = previous.get(path) or {}
        state[path] = dict(stat)
        if (before.get("size"), before.get("mtime")) != (stat["size"], stat["mtime"]):
            continue
        digest = before.get("sha256") if stat["mtime"] is not None else None
        if digest is None:
            try:
                digest = sha256(path)
            except FileNotFoundError:  # removed since the listing: not settled
                continue
        settled[path] = state[path]["sha256"] = digest
    return settled, state


def files_hash(files: dict[str, str]) -> str:
    """One short hash of a day's files (names and content hashes): names the request of those files."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def held_files(database: str, connect, tables_of_files: tuple[str, ...]) -> dict[str | None, dict[str, str]]:
    """The files the warehouse holds per day (``None``: files of no day), accepted or rejected.

    Args:
        database: The warehouse file; a missing file holds nothing (and is not created).
        connect: ``Warehouse.connect``; called read-only, without waiting for a lock.
        tables_of_files: The source's landing-files and rejected-files tables.

    Raises:
        TimeoutError: If another process holds the warehouse's lock.
    """
    if not Path(database).exists():
        return {}
    held: dict[str | None, dict[str, str]] = {}
    with connect(read_only=True, lock_timeout_s=0) as con:
        tables = table_names(con)
        for table in tables_of_files:
            if table in tables:
                for day, path, digest in con.execute(f"SELECT _partition, path, sha256 FROM {table}").fetchall():
                    held.setdefault(day, {})[path] = digest
    return held


def stopped_by_blocking_check(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether ``run`` failed only because a blocking asset check failed (a verdict on the data, not a crash).

    Such a run wrote its data before the check stopped it: asking again for the
    same files gives the same verdict, so the sensor leaves the day alone.
    """
    from dagster._core.events import DagsterEventType

    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    errors = [r.event_log_entry.dagster_event.step_failure_data.error for r in records]
    return bool(errors) and all(e is not None and e.cls_name == "DagsterAssetCheckFailedError" for e in errors)


def decide(
    files: dict[str, str], held: dict[str, str], runs: list[dg.DagsterRun], max_attempts: int,
    gate_stopped: Callable[[dg.DagsterRun], bool] = lambda run: False,
) -> tuple[str, str]:
    """What to do about one day's settled ``files``, and why.

    Args:
        files: The day's landing files, ``{path: sha256}``.
        held: What the warehouse holds for the day, ``{path: sha256}``.
        runs: The runs the sensor requested for exactly these files, newest first.
        max_attempts: How many runs the same files get.
        gate_stopped: Whether a failed run was stopped by a blocking check
            (:func:`stopped_by_blocking_check`): then the day is done, not retried.

    Returns:
        One of ``request``, ``wait``, ``done``, ``give_up``, with a reason.
    """
    statuses = [r.status for r in runs]
    if any(not r.is_finished for r in runs):
        return WAIT, "a run for these files is queued or in progress"
    latest = statuses[0] if statuses else None
    if latest == dg.DagsterRunStatus.CANCELED:
        return DONE, "the latest run for these files was canceled by hand"
    ingested = all(held.get(path) == digest for path, digest in files.items())
    if ingested and latest == dg.DagsterRunStatus.FAILURE and gate_stopped(runs[0]):
        return DONE, "a blocking check stopped the latest run for these files (see its checks; fix the files)"
    if ingested and latest != dg.DagsterRunStatus.FAILURE:
        return DONE, "already in the warehouse"
    why = "the latest run for these files failed" if latest == dg.DagsterRunStatus.FAILURE else "new or changed files"
    if len(runs) >= max_attempts:
        return GIVE_UP, f"{why}, after {len(runs)} run(s) for the same files"
    return REQUEST, why


def requested_runs(instance: dg.DagsterInstance, tag: str, hashes: list[str]) -> dict[str, list[dg.DagsterRun]]:
    """The runs tagged ``tag`` with one of ``hashes``, grouped by hash, newest first."""
    if not hashes:
        return {}
    runs: dict[str, list[dg.DagsterRun]] = {h: [] for h in hashes}
    for run in instance.get_runs(dg.RunsFilter(tags={tag: hashes})):  # newest first
        runs[run.tags[tag]].append(run)
    return runs


def warehouse_run_in_progress(instance: dg.DagsterInstance, pool: str) -> str | None:
    """The id of a run in progress that holds the warehouse pool (any route: queue or CLI), if any."""
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
    from dagster._core.storage.tags import POOL_TAG_PREFIX

    runs = instance.get_runs(
        dg.RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES, tags={f"{POOL_TAG_PREFIX}{pool}": "true"}), limit=1
    )
    return runs[0].run_id if runs else None

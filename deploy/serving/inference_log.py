"""The model server's own inference log: one JSON line per scored row, written before the answer.

Plain Python (the serving environment imports it). Each worker process appends
to its own files, ``<dir>/day=YYYY-MM-DD/<host>-<pid>-<YYYYMMDDHH>.jsonl``: the
day is the UTC day of the row's event time (the application's time, which is
how monitoring partitions the log), the hour the server's wall-clock hour, so
files stay small and workers never interleave. A row whose event time is not a
time, or is after the moment it is served (beyond clock skew), goes to the file
of the served day instead (see :func:`file_day`). A lock serialises the threads of
one worker; each request's lines go out in one ``write`` per file, flushed to the
operating system before the response is returned.

What a crash can lose: a killed worker (``kill -9``, OOM) loses nothing it has
answered, since every answered row was handed to the OS first; the request it
was scoring gets no answer and no line. A machine crash or power loss can lose
what the OS had not yet written to disk (there is no ``fsync`` per request: it
would cost a disk flush per prediction); at most a torn last line, which the
ingestion counts and reports as rejected, never drops silently.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import threading
from pathlib import Path

import orjson

from platform_assets.declarations import CLOCK_SKEW_S

HOST = socket.gethostname().replace("/", "_")
# How far after its serving an event may be and still name its file's day: the clock skew the server
# accepts in a caller's event time; monitoring reads with the same allowance.
CLOCK_SKEW = dt.timedelta(seconds=CLOCK_SKEW_S)
# Strict JSON (a NaN is an error, not a token), compact.
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _encoded_column(values: list) -> list[str]:
    """The JSON text of each value, as ``_encode`` writes it; floats, ints and strings a column at a time."""
    kinds = set(map(type, values))
    if kinds == {float}:
        if not all(map(math.isfinite, values)):
            raise ValueError("Out of range float values are not JSON compliant")
        return orjson.dumps(values).decode()[1:-1].split(",")  # a number's text has no comma
    if kinds == {int}:
        try:
            return orjson.dumps(values).decode()[1:-1].split(",")
        except TypeError:  # beyond 64 bits
            return list(map(int.__repr__, values))
    if kinds == {type(None)}:  # ids a request did not send
        return ["null"] * len(values)
    if kinds == {str}:  # categories, times, ids: few distinct values per request
        known: dict[str, str] = {}
        return [known[v] if v in known else known.setdefault(v, _encode(v)) for v in values]
    return list(map(_encode, values))


def encode_record(record: dict) -> bytes:
    """One record's line (UTF-8, no newline): the same record as ``_encode`` writes, in one orjson call;
    ``_encode`` itself where orjson cannot (integers beyond 64 bits, lone surrogates).

    Raises:
        ValueError: For a NaN or infinite float (orjson would write ``null``).
    """
    for value in record.values():
        if value.__class__ is float and not math.isfinite(value):
            raise ValueError("Out of range float values are not JSON compliant")
    try:
        return orjson.dumps(record)
    except TypeError:
        return _encode(record).encode()


def encode_rows(rows: int, same: dict, each: dict) -> list[str]:
    """One JSON object per row: the fields of ``same`` (one value for every row), then those of ``each``
    (a list of ``rows`` values per field). The same text as ``_encode`` of each row's dict, a request at
    a time: constants are encoded once and every row is one string formatting.

    Raises:
        ValueError: For a NaN or infinite float, or a column not ``rows`` long.
    """
    if rows == 1:  # the common request: one orjson call
        wrong = [key for key, values in each.items() if len(values) != 1]
        if wrong:
            raise ValueError(f"field {wrong[0]!r} has {len(each[wrong[0]])} values for 1 rows")
        return [encode_record({**same, **{key: values[0] for key, values in each.items()}}).decode()]
    pieces = [(_encode(str(k)) + ":" + _encode(v)).replace("%", "%%") for k, v in same.items()]
    columns = []
    for key, values in each.items():
        if len(values) != rows:
            raise ValueError(f"field {key!r} has {len(values)} values for {rows} rows")
        pieces.append(_encode(str(key)).replace("%", "%%") + ":%s")
        columns.append(_encoded_column(list(values)))
    template = "{" + ",".join(pieces) + "}"
    return [template % row for row in zip(*columns)] if columns else [template] * rows


def file_day(event_ts, served_at: dt.datetime) -> str:
    """The day folder of a row: the UTC day of its event, or of ``served_at`` when the event is not a time
    or is after ``served_at`` by more than :data:`CLOCK_SKEW`.

    The event's day stays the rule: a backfill, or a row scored just after midnight, belongs to
    the day it happened, and monitoring partitions by it. But an event after it was served (an
    application dated tomorrow, or 9999-12-31) names a partition that does not exist yet, or
    ever: a folder for it would hold rows no ingestion counts, and a text that is not a time
    would name any folder at all (``../``). In the served day's file such a row is read,
    rejected with its reason and counted like any other bad line.
    """
    served = served_at.astimezone(dt.timezone.utc).replace(tzinfo=None) if served_at.tzinfo else served_at
    try:
        moment = dt.datetime.fromisoformat(str(event_ts))
    except ValueError:
        return served.date().isoformat()
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (moment if moment <= served + CLOCK_SKEW else served).date().isoformat()


class InferenceLogError(RuntimeError):
    """A prediction could not be logged (disk full, permissions): it is not answered either."""


class InferenceLog:
    """Appends prediction records to this process's files under ``directory``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._files: dict[Path, object] = {}
        self._pid = os.getpid()
        self._paths: dict[tuple[str, str], Path] = {}

    def _file(self, path: Path):
        handle = self._files.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Append mode, unbuffered: the file is only ever extended, by this process only, and each
            # request's lines reach the OS in one write.
            handle = self._files[path] = open(path, "ab", buffering=0)
            if len(self._files) > 8:  # files of past hours and days are finished: close them
                for old in list(self._files)[:-8]:
                    self._files.pop(old).close()
        return handle

    def path_for(self, event_day: str, served_at: dt.datetime) -> Path:
        """The file of this process for rows of ``event_day`` served in ``served_at``'s hour."""
        if os.getpid() != self._pid:  # forked after construction: never share a parent's handles
            self._files, self._paths, self._pid = {}, {}, os.getpid()
        hour = f"{served_at.year:04d}{served_at.month:02d}{served_at.day:02d}{served_at.hour:02d}"
        path = self._paths.get((event_day, hour))
        if path is None:
            if len(self._paths) > 64:
                self._paths.clear()
            path = self._paths[event_day, hour] = self.directory / f"day={event_day}" / f"{HOST}-{self._pid}-{hour}.jsonl"
        return path

    def write(self, rows: int, same: dict, each: dict, served_at: dt.datetime) -> None:
        """Appends ``rows`` records (see :func:`encode_rows`; ``event_ts``, an ISO time, in ``same``
        or ``each``) and flushes them to the OS.

        Raises:
            InferenceLogError: If they could not be encoded (a NaN) or written.
        """
        try:
            lines = encode_rows(rows, same, each)
        except (TypeError, ValueError) as exc:
            raise InferenceLogError(f"could not encode the inference log records: {exc}") from exc
        events = each.get("event_ts") or [same["event_ts"]] * rows
        day_of = {event: file_day(event, served_at) for event in set(map(str, events))}
        days = [day_of[str(event)] for event in events]
        by_path: dict[Path, list[str]] = {}
        if len(set(days)) == 1:
            by_path[self.path_for(days[0], served_at)] = lines
        else:
            for day, line in zip(days, lines):
                by_path.setdefault(self.path_for(day, served_at), []).append(line)
        self._append({path: ("\n".join(lines) + "\n").encode()
                      for path, lines in by_path.items()})

    def write_record(self, record: dict, served_at: dt.datetime) -> None:
        """Appends one record (with its ``event_ts``) and flushes it to the OS: :meth:`write` of one row.

        Raises:
            InferenceLogError: If it could not be encoded (a NaN) or written.
        """
        try:
            line = encode_record(record) + b"\n"
        except (TypeError, ValueError) as exc:
            raise InferenceLogError(f"could not encode the inference log records: {exc}") from exc
        self._append({self.path_for(file_day(record["event_ts"], served_at), served_at): line})

    def _append(self, by_path: dict[Path, bytes]) -> None:
        try:
            with self._lock:
                for path, data in by_path.items():
                    handle, view = self._file(path), memoryview(data)
                    while view:  # a regular file takes it whole, short of a full disk (then an error)
                        view = view[handle.write(view):]
        except (OSError, ValueError) as exc:
            raise InferenceLogError(f"could not write the inference log under {self.directory}: {exc}") from exc

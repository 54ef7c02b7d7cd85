"""The model server's own inference log: one JSON line per scored row, written before the answer.

Plain Python (the serving environment imports it). Each worker process appends
to its own files, ``<dir>/day=YYYY-MM-DD/<host>-<pid>-<YYYYMMDDHH>.jsonl``: the
day is the UTC day of the row's event time (the application's time, which is
how monitoring partitions the log), the hour the server's wall-clock hour, so
files stay small and workers never interleave. A lock serialises the threads of
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

HOST = socket.gethostname().replace("/", "_")
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


def encode_rows(rows: int, same: dict, each: dict) -> list[str]:
    """One JSON object per row: the fields of ``same`` (one value for every row), then those of ``each``
    (a list of ``rows`` values per field). The same text as ``_encode`` of each row's dict, a request at
    a time: constants are encoded once and every row is one string formatting.

    Raises:
        ValueError: For a NaN or infinite float, or a column not ``rows`` long.
    """
    pieces = [(_encode(str(k)) + ":" + _encode(v)).replace("%", "%%") for k, v in same.items()]
    columns = []
    for key, values in each.items():
        if len(values) != rows:
            raise ValueError(f"field {key!r} has {len(values)} values for {rows} rows")
        pieces.append(_encode(str(key)).replace("%", "%%") + ":%s")
        columns.append(_encoded_column(list(values)))
    template = "{" + ",".join(pieces) + "}"
    return [template % row for row in zip(*columns)] if columns else [template] * rows


class InferenceLogError(RuntimeError):
    """A prediction could not be logged (disk full, permissions): it is not answered either."""


class InferenceLog:
    """Appends prediction records to this process's files under ``directory``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._files: dict[Path, object] = {}
        self._pid = os.getpid()

    def _file(self, path: Path):
        handle = self._files.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Append mode: the file is only ever extended, by this process only.
            handle = self._files[path] = open(path, "a", encoding="utf-8")
            if len(self._files) > 8:  # files of past hours and days are finished: close them
                for old in list(self._files)[:-8]:
                    self._files.pop(old).close()
        return handle

    def path_for(self, event_day: str, served_at: dt.datetime) -> Path:
        """The file of this process for rows of ``event_day`` served in ``served_at``'s hour."""
        if os.getpid() != self._pid:  # forked after construction: never share a parent's handles
            self._files, self._pid = {}, os.getpid()
        return self.directory / f"day={event_day}" / f"{HOST}-{self._pid}-{served_at:%Y%m%d%H}.jsonl"

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
        days = [str(event)[:10] for event in events]
        by_path: dict[Path, list[str]] = {}
        if len(set(days)) == 1:
            by_path[self.path_for(days[0], served_at)] = lines
        else:
            for day, line in zip(days, lines):
                by_path.setdefault(self.path_for(day, served_at), []).append(line)
        try:
            with self._lock:
                for path, lines in by_path.items():
                    handle = self._file(path)
                    handle.write("\n".join(lines) + "\n")
                    handle.flush()
        except (OSError, ValueError) as exc:
            raise InferenceLogError(f"could not write the inference log under {self.directory}: {exc}") from exc

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
import os
import socket
import threading
from pathlib import Path

HOST = socket.gethostname().replace("/", "_")


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

    def write(self, records: list[dict], served_at: dt.datetime) -> None:
        """Appends ``records`` (each with an ``event_ts`` ISO time) and flushes them to the OS.

        Raises:
            InferenceLogError: If they could not be written.
        """
        by_path: dict[Path, list[str]] = {}
        for record in records:
            path = self.path_for(str(record["event_ts"])[:10], served_at)
            by_path.setdefault(path, []).append(json.dumps(record, allow_nan=False, separators=(",", ":")))
        try:
            with self._lock:
                for path, lines in by_path.items():
                    handle = self._file(path)
                    handle.write("\n".join(lines) + "\n")
                    handle.flush()
        except (OSError, ValueError) as exc:
            raise InferenceLogError(f"could not write the inference log under {self.directory}: {exc}") from exc

"""The server processes the platform starts: spawned detached, recorded in a file, stopped by that record.

Plain functions, no Dagster, shared by the model server (:mod:`platform_assets.deploy.serving`)
and the feature server (:mod:`platform_assets.deploy.feature_server`). A server runs in
its own session (process group), so that it outlives the run that started it and can be
stopped whole (workers, helpers); its record file (JSON: pid, log, what it serves) is
what a later run, ``make stop-serving`` or a test stops it by.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Launch:
    """How to run a server: its command, environment and working directory, the URL it answers on,
    and what its record says of it (ports, what it serves)."""

    command: list[str]
    env: dict
    cwd: Path
    url: str
    fields: dict = field(default_factory=dict)


# Where the kernel's range of ephemeral ports cannot be read (not Linux), Linux's default.
EPHEMERAL_DEFAULT = (32768, 60999)
FIRST_CHOSEN_PORT = 20000


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT


def free_port() -> int:
    """A TCP port on the loopback interface that is free now, chosen outside the kernel's ephemeral range.

    A port chosen now is often bound later (a server started after its configuration is written, a release
    that a test prepares minutes ahead). The kernel hands out ephemeral ports to every outgoing connection
    and every ``bind(0)``, so a port taken from that range can be someone's client socket by then; a
    random free port below it (or above it) is not handed out by anyone but a program that asks for it.
    """
    low, high = _ephemeral_ports()
    choices = range(FIRST_CHOSEN_PORT, low) if low - FIRST_CHOSEN_PORT >= 1000 else range(high + 1, 65536)
    pick = random.SystemRandom()
    for _ in range(100):
        port = pick.choice(choices)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # that range is full: any free port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie counts as gone; ours are reaped)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"  # a zombie of another parent (e.g. a finished Dagster run)
    except (OSError, IndexError):
        return _signal_reaches(os.kill, pid)


def _signal_reaches(kill, ident: int) -> bool:
    """Whether signal 0 reaches process (``os.kill``) or process group (``os.killpg``) ``ident``."""
    try:
        kill(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def group_alive(pid: int) -> bool:
    """Whether the leader or any member of process group ``pid`` still runs."""
    return is_alive(pid) or _signal_reaches(os.killpg, pid)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, from ``/proc`` (empty without it).

    Unlike :func:`group_alive`, a zombie left for init to reap does not count.
    """
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def terminate_process_group(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM to the process group ``pid``, SIGKILL after ``grace_s`` seconds; returns once it is gone."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pid):
                return
            time.sleep(0.1)


def spawn_detached(command: list[str], cwd: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """Starts ``command`` in its own session (process group), output appended to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )


def spawn_recorded(command: list[str], *, cwd: Path, env: dict, log_path: Path, record_path: Path,
                   **fields) -> subprocess.Popen:
    """:func:`spawn_detached`, then the process recorded in ``record_path``.

    The record (JSON) holds ``pid``, ``log_path``, ``started_at`` and ``fields``
    (what the server serves, its URL and ports); :func:`stop_recorded` reads it.
    """
    process = spawn_detached(command, cwd, env, log_path)
    record = {"pid": process.pid, **fields, "log_path": str(log_path), "started_at": time.time()}
    record_path = Path(record_path)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2))
    return process


def read_record(record_path: Path) -> dict | None:
    """The record of a running server (pid, ports, url, what it serves), or ``None``."""
    try:
        return json.loads(Path(record_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _runs_program(pid: int, markers: tuple[bytes, ...]) -> bool:
    """Whether ``pid``'s command line names one of ``markers`` (a recycled pid in a stale record does not).

    Without ``/proc`` (or with an empty command line) there is nothing to tell: the record is trusted.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not cmdline or any(marker in cmdline for marker in markers)


def stop_recorded(record_path: Path, markers: tuple[bytes, ...], what: str, grace_s: float = 5.0) -> bool:
    """Stops the process group recorded in ``record_path`` (SIGTERM, SIGKILL after ``grace_s``); removes the record.

    Safe when the file is absent, the process is already gone, or the pid now
    belongs to another program (its command line names none of ``markers``).

    Returns:
        Whether a server was running.
    """
    record = read_record(record_path) or {}
    Path(record_path).unlink(missing_ok=True)
    pid = record.get("pid")
    if not pid or not group_alive(pid) or not _runs_program(pid, markers):
        return False
    with contextlib.suppress(OSError, KeyError, TypeError):  # explain the tracebacks of a dying group
        with open(record["log_path"], "a") as log:
            log.write(f"--- stopping {what} pid {pid} (SIGTERM to its process group) ---\n")
    terminate_process_group(pid, grace_s)
    return True


def log_tail(log_path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` of a server's log, for error messages."""
    if log_path is None or not Path(log_path).exists():
        return "(no log)"
    return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])


def poll_until_answers(url: str, *, failed: Callable[[], str | None], log_path: Path | None, timeout_s: float,
                       what: str, error: type[Exception] = RuntimeError) -> float:
    """Polls ``GET url`` until it answers 200; returns the seconds waited.

    Args:
        failed: Called before each poll: what went wrong with the server (it exited...), else ``None``.

    Raises:
        error: When ``failed`` says so or ``timeout_s`` passed; includes the log's tail.
    """
    import requests

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        problem = failed()
        if problem:
            raise error(f"{what} {problem}; log tail:\n{log_tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise error(f"{what} at {url} not ready after {timeout_s} s; log tail:\n{log_tail(log_path)}")


def wait_until_answers(url: str, *, pid: int, log_path: Path | None, timeout_s: float, what: str) -> float:
    """Polls ``GET url`` until it answers 200 while process ``pid`` lives; returns the seconds waited.

    Raises:
        RuntimeError: If the process exited or ``timeout_s`` passed; includes the log's tail.
    """
    return poll_until_answers(url, failed=lambda: None if is_alive(pid) else f"(pid {pid}) exited while starting",
                              log_path=log_path, timeout_s=timeout_s, what=what)

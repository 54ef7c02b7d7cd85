"""The local model server: a Seldon Core 1.x model served from the serving environment.

Plain functions, no Dagster. The server (``deploy/serving/model_server.py``: Seldon's
REST app under gunicorn workers that slow clients cannot stall, on 127.0.0.1 unless told
otherwise) runs in its own session so that it outlives the run that started it, and is
stopped as a process group (workers, a metrics server, Seldon's multiprocessing manager).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_CLASS = "LoanDefaultModel"
SERVING_DIR = PROJECT_ROOT / "deploy" / "serving"
LAUNCHER = SERVING_DIR / "model_server.py"
DEFAULT_HOST = "127.0.0.1"
# What a record's command line shows: this launcher, or Seldon's CLI for records of older servers.
_SERVER_MARKERS = (b"model_server.py", b"seldon-core-microservice")
HEALTH_PATH = "/health/ping"
PREDICT_PATH = "/api/v1.0/predictions"
_LOGS: dict[str, Path] = {}  # url -> log of servers started by this process, for error messages


class ModelServerError(RuntimeError):
    """An error status from the model server: ``status`` 400 is the caller's mistake (``body`` says which)."""

    def __init__(self, url: str, status: int, body: str):
        super().__init__(f"model server {url} answered HTTP {status}: {body[:2000]}")
        self.status, self.body = status, body


def _no_constant(name: str):
    """``parse_constant`` of a strict JSON parser: NaN and Infinity are not JSON."""
    raise ValueError(f"model server answered with {name}, which is not valid JSON")


@dataclass(frozen=True)
class ServerProcess:
    """A started model server."""

    pid: int
    url: str
    http_port: int
    model_version: str
    log_path: Path | None = None


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
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


def _group_alive(pid: int) -> bool:
    """Whether the leader or any member of the server's process group still runs."""
    return is_alive(pid) or _signal_reaches(os.killpg, pid)


def _is_other_program(pid: int) -> bool:
    """Whether ``pid`` is visibly not a model server (a recycled pid in a stale record)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(cmdline) and not any(marker in cmdline for marker in _SERVER_MARKERS)


def read_server_record(pid_path: Path) -> dict | None:
    """The record of the running server (pid, ports, url, model), or ``None``."""
    try:
        return json.loads(Path(pid_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stop_model_server(pid_path: Path, grace_s: float = 5.0) -> bool:
    """Stops the recorded server's process group (SIGTERM, SIGKILL after ``grace_s``); removes ``pid_path``.

    Safe when the file is absent or the process is already gone.

    Returns:
        Whether a server was running.
    """
    record = read_server_record(pid_path) or {}
    Path(pid_path).unlink(missing_ok=True)
    pid = record.get("pid")
    if not pid or not _group_alive(pid) or _is_other_program(pid):
        return False
    with contextlib.suppress(OSError, KeyError, TypeError):  # explain the tracebacks of a dying group
        with open(record["log_path"], "a") as log:
            log.write(f"--- stopping model server pid {pid} (SIGTERM to its process group) ---\n")
    terminate_process_group(pid, grace_s)
    return True


def terminate_process_group(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM to the process group ``pid``, SIGKILL after ``grace_s`` seconds; returns once it is gone."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.1)


def spawn_detached(command: list[str], cwd: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """Starts ``command`` in its own session (process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )


def _port_is_free(host: str, port: int) -> None:
    """Raises if something already listens on ``host:port`` (checked by binding it, then letting go).

    Raises:
        OSError: Naming the port and the way out (``SERVING_PORT``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as exc:
            raise OSError(
                f"port {port} on {host or '0.0.0.0'} is already in use ({exc.strerror}): another model server "
                "(of another state root?) or program holds it; stop it or choose another port with SERVING_PORT"
            ) from None


def client_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host`` (URL form)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def start_model_server(
    *, python: Path, model_dir: Path, model_name: str, model_version: str, http_port: int,
    log_path: Path, pid_path: Path, workdir: Path | None = None, host: str = DEFAULT_HOST,
    keepalive_s: int = 5, read_timeout_s: float = 10.0, feature_server_url: str | None = None,
    inference_log_dir: Path | None = None, workers: int = 2, feature_lookup_timeout_s: float = 2.0,
) -> ServerProcess:
    """Starts ``model_server.py LoanDefaultModel`` on ``model_dir``, replacing a running one.

    Args:
        python: The serving environment's interpreter.
        model_dir: The model bundle directory.
        model_name: Registered model name (returned with every prediction).
        model_version: Registered model version (returned with every prediction).
        http_port: REST port.
        log_path: Server output is appended here.
        pid_path: Where the running server is recorded (JSON).
        workdir: The server's working directory; default ``deploy/serving``. The
            model class is importable from any directory (it is on ``PYTHONPATH``).
        host: Address the REST and metrics ports listen on: loopback by default;
            ``0.0.0.0`` exposes the unauthenticated server to the network.
        keepalive_s: Seconds an idle connection (new or kept alive) stays open.
        read_timeout_s: Seconds a client has to send one whole request.
        feature_server_url: The Feast feature server the model reads applicants' history
            from; without it only requests carrying every model input can be scored.
        inference_log_dir: Where the server logs every prediction (``None``: no log).
        workers: gunicorn worker processes.
        feature_lookup_timeout_s: Per-request bound on the feature lookup (then 503).

    Returns:
        The started (not yet healthy) server: see :func:`wait_until_healthy`.

    Raises:
        FileNotFoundError: If the serving environment is missing (run ``make install``).
    """
    if not Path(python).exists():
        raise FileNotFoundError(f"{python} not found: create the serving environment with `make install`")
    stop_model_server(pid_path)
    _port_is_free(host, http_port)  # else a server of another state root would answer our health checks
    metrics_port = free_port()  # Seldon's default 6000 would clash between servers
    env = {**os.environ, "MODEL_DIR": str(Path(model_dir).resolve()), "MODEL_NAME": model_name,
           "MODEL_VERSION": str(model_version), "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(SERVING_DIR)])}
    env.setdefault("OMP_NUM_THREADS", "1")  # several worker processes share the cores
    env["GUNICORN_WORKERS"] = str(workers)
    env["FEATURE_LOOKUP_TIMEOUT_S"] = str(feature_lookup_timeout_s)
    for name, value in (("FEATURE_SERVER_URL", feature_server_url), ("INFERENCE_LOG_DIR", inference_log_dir)):
        if value:
            env[name] = str(value)
        else:
            env.pop(name, None)
    # absolute(), not resolve(): bin/python is the venv's symlink, and the cwd changes below.
    command = [str(Path(python).absolute()), str(LAUNCHER), MODEL_CLASS, "--host", host, "--http-port", str(http_port),
               "--metrics-port", str(metrics_port), "--keepalive", str(keepalive_s),
               "--read-timeout", str(read_timeout_s), "--log-level", "WARNING"]
    cwd = Path(workdir) if workdir else SERVING_DIR
    cwd.mkdir(parents=True, exist_ok=True)
    log_path, pid_path = Path(log_path), Path(pid_path)
    process = spawn_detached(command, cwd, env, log_path)
    url = f"http://{client_host(host)}:{http_port}"
    _LOGS[url] = log_path
    record = dict(pid=process.pid, url=url, host=host, http_port=http_port, metrics_port=metrics_port,
                  model_name=model_name, model_version=str(model_version), model_dir=env["MODEL_DIR"],
                  log_path=str(log_path), feature_server_url=feature_server_url,
                  inference_log_dir=str(inference_log_dir) if inference_log_dir else None, started_at=time.time())
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(json.dumps(record, indent=2))
    return ServerProcess(process.pid, url, http_port, str(model_version), log_path)


def _log_tail(log_path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` of the server's log, for error messages."""
    if log_path is None or not Path(log_path).exists():
        return "(no log)"
    return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])


def wait_until_healthy(
    url: str, timeout_s: float = 60.0, process_pid: int | None = None, *,
    pid: int | None = None, log_path: Path | None = None,
) -> float:
    """Polls ``GET {url}/health/ping`` until it answers 200; returns the seconds waited.

    The ping answers only once the gunicorn worker has loaded the model.

    Args:
        url: The server's base URL.
        timeout_s: How long to wait.
        process_pid: The server's pid (alias ``pid``): stop waiting as soon as it exits.
        log_path: The server's log; default: the one given to :func:`start_model_server`.

    Raises:
        RuntimeError: If the process died or ``timeout_s`` passed; includes the log's tail.
    """
    import requests

    pid = process_pid or pid
    log_path = log_path or _LOGS.get(url)
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if pid is not None and not is_alive(pid):
            raise RuntimeError(f"model server (pid {pid}) exited while starting; log tail:\n{_log_tail(log_path)}")
        try:
            if requests.get(url + HEALTH_PATH, timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"model server at {url} not healthy after {timeout_s} s; log tail:\n{_log_tail(log_path)}")


def _plain(value):
    """A JSON-safe Python value: numpy scalars unwrapped, timestamps as ISO text, missing as None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if value != value else value
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    if getattr(getattr(value, "dtype", None), "kind", "") in ("m", "M"):
        return None if str(value) == "NaT" else str(value)  # numpy datetime64 / timedelta64
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def predict_over_http(url: str, rows: list[dict], timeout_s: float = 30.0) -> tuple[list[float], dict]:
    """Scores ``rows`` (column -> value) on the server at ``url``.

    Sends ``{"data": {"names": [...], "ndarray": [[...], ...]}}`` to ``/api/v1.0/predictions``.

    Returns:
        The probabilities of default, one float per row, and the response's ``meta``
        (``meta["tags"]`` names the model and version that answered).

    Raises:
        ValueError: If the rows do not all have the first row's columns, or the
            answer holds NaN or Infinity.
        ModelServerError: On a non-200 answer (a ``RuntimeError``), with its status and body.
    """
    import requests

    if not rows:
        return [], {}
    names = list(rows[0])
    try:
        ndarray = [[_plain(row[n]) for n in names] for row in rows]
    except KeyError as exc:
        raise ValueError(f"every row needs the first row's columns {names}; one lacks {exc}") from None
    payload = {"data": {"names": names, "ndarray": ndarray}}
    response = requests.post(url + PREDICT_PATH, json=payload, timeout=timeout_s)
    if response.status_code != 200:
        raise ModelServerError(url, response.status_code, response.text)
    body = json.loads(response.text, parse_constant=_no_constant)
    values = body["data"]["ndarray"]
    return [float(v[0]) if isinstance(v, list) else float(v) for v in values], body.get("meta", {})

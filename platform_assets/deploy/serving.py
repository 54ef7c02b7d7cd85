"""The local model server: a Seldon Core 1.x microservice in the serving environment.

Plain functions, no Dagster: start (replacing a running server), wait until
healthy, predict over REST, stop. The server runs in its own process session
so that it outlives the Dagster run that started it.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ServerProcess:
    """A started model server."""

    pid: int
    url: str
    http_port: int
    model_version: str


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (and is not a zombie of ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    return _signal_reaches(os.kill, pid)


def _signal_reaches(kill, ident: int) -> bool:
    """Whether signal 0 reaches process (``os.kill``) or process group (``os.killpg``) ``ident``."""
    try:
        kill(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_server_record(pid_path: Path) -> dict | None:
    """The record of the running server, or ``None``."""
    try:
        return json.loads(Path(pid_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stop_model_server(pid_path: Path, grace_s: float = 5.0) -> bool:
    """Stops the recorded server's whole process group; returns whether one was running."""
    record = read_server_record(pid_path)
    Path(pid_path).unlink(missing_ok=True)
    pid = record["pid"] if record else None
    if pid is None or not (is_alive(pid) or _signal_reaches(os.killpg, pid)):
        return False
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # the whole group: gunicorn master (leader), its worker, gRPC and metrics processes
            if not is_alive(pid) and not _signal_reaches(os.killpg, pid):
                return True
            time.sleep(0.1)
    return True


def start_model_server(
    *,
    python: Path,
    model_dir: Path,
    model_name: str,
    model_version: str,
    http_port: int,
    log_path: Path,
    pid_path: Path,
) -> ServerProcess:
    """Starts ``seldon-core-microservice LoanDefaultModel`` on ``model_dir``, replacing a running one.

    Args:
        python: The serving environment's interpreter; its ``seldon-core-microservice``
            script sits beside it.
        model_dir: The model bundle directory.
        model_name: Registered model name (returned with every prediction).
        model_version: Registered model version (returned with every prediction).
        http_port: REST port on 127.0.0.1.
        log_path: Server output is appended here.
        pid_path: Where the running server is recorded.

    Raises:
        FileNotFoundError: If the serving environment is missing (run ``make install``).
    """
    # absolute() (not resolve()): bin/python is a symlink; the script sits beside the link.
    script = Path(python).absolute().parent / "seldon-core-microservice"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: create the serving environment with `make install`")
    stop_model_server(pid_path)
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "MODEL_DIR": str(Path(model_dir).resolve()),
        "MODEL_NAME": model_name,
        "MODEL_VERSION": str(model_version),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    command = [
        str(script), MODEL_CLASS,
        "--http-port", str(http_port),
        "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port),
        "--workers", "1",
        "--grpc-workers", "1",
        "--log-level", "WARNING",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=SERVING_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{http_port}"
    record = {
        "pid": process.pid, "url": url, "http_port": http_port, "grpc_port": grpc_port,
        "metrics_port": metrics_port, "model_name": model_name, "model_version": str(model_version),
    }
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(json.dumps(record, indent=2))
    return ServerProcess(process.pid, url, http_port, str(model_version))


def _log_tail(log_path: Path | None, lines: int = 30) -> str:
    if log_path is None or not Path(log_path).exists():
        return ""
    return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])


def wait_until_healthy(url: str, timeout_s: float = 90.0, pid: int | None = None, log_path: Path | None = None) -> float:
    """Polls ``/health/ping`` until it answers; returns the seconds waited.

    Raises:
        RuntimeError: If the process died or ``timeout_s`` passed; includes the log's tail.
    """
    import requests

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if pid is not None and not is_alive(pid):
            raise RuntimeError(f"model server (pid {pid}) exited while starting:\n{_log_tail(log_path)}")
        try:
            if requests.get(f"{url}/health/ping", timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"model server at {url} not healthy after {timeout_s} s:\n{_log_tail(log_path)}")


def _plain(value):
    """A JSON-safe Python value: numpy scalars unwrapped, timestamps as ISO text, missing as None."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return None if value != value else float(value)
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    if getattr(getattr(value, "dtype", None), "kind", "") in ("m", "M"):
        return None if str(value) == "NaT" else str(value)  # numpy datetime64 / timedelta64
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def predict_over_http(url: str, rows: list[dict], timeout_s: float = 60.0) -> tuple[list[float], dict]:
    """Sends rows in Seldon's ``{"data": {"names", "ndarray"}}`` form; returns probabilities and ``meta``.

    Raises:
        RuntimeError: On a non-200 answer, with its status and body.
    """
    import requests

    if not rows:
        return [], {}
    names = list(rows[0])
    payload = {"data": {"names": names, "ndarray": [[_plain(row[n]) for n in names] for row in rows]}}
    response = requests.post(f"{url}/api/v1.0/predictions", json=payload, timeout=timeout_s)
    if response.status_code != 200:
        raise RuntimeError(f"model server answered {response.status_code}: {response.text[:2000]}")
    body = response.json()
    values = body["data"]["ndarray"]
    return [float(v[0]) if isinstance(v, list) else float(v) for v in values], body.get("meta", {})

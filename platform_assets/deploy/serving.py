"""The local model server: a Seldon Core 1.x model served from the serving environment.

Plain functions, no Dagster. The server (``deploy/serving/model_server.py``: Seldon's
REST app under gunicorn workers that slow clients cannot stall, on 127.0.0.1 unless told
otherwise) runs in its own session so that it outlives the run that started it, and is
stopped as a process group (workers, a metrics server, Seldon's multiprocessing manager);
the process handling is :mod:`platform_assets.deploy.processes`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from platform_assets import config
from platform_assets.deploy.processes import Launch, free_port, spawn_recorded, stop_recorded, wait_until_answers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_CLASS = "PlatformModel"
SERVING_DIR = PROJECT_ROOT / "deploy" / "serving"
LAUNCHER = SERVING_DIR / "model_server.py"
DEFAULT_HOST = "127.0.0.1"
# What a recorded server's command line shows (else the pid was recycled by another program).
_SERVER_MARKERS = (LAUNCHER.name.encode(),)
HEALTH_PATH = "/health/ping"
PREDICT_PATH = "/api/v1.0/predictions"


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
    log_path: Path


def stop_model_server(record_path: Path, grace_s: float = 5.0) -> bool:
    """Stops the recorded server's process group (SIGTERM, SIGKILL after ``grace_s``); removes ``record_path``.

    Safe when the file is absent or the process is already gone.

    Returns:
        Whether a server was running.
    """
    return stop_recorded(record_path, _SERVER_MARKERS, "model server", grace_s)


def port_is_free(host: str, port: int) -> None:
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


def start_model_server(*, log_path: Path, record_path: Path, **settings) -> ServerProcess:
    """Starts ``model_server.py PlatformModel`` on its own (not supervised), replacing a running one.

    Args:
        log_path: Server output is appended here.
        record_path: Where the running server is recorded (JSON; :func:`stop_model_server` reads it).
        settings: The arguments of :func:`model_server_launch`.

    Returns:
        The started (not yet healthy) server: see :func:`wait_until_healthy`.
    """
    stop_model_server(record_path)
    launch = model_server_launch(**settings)
    process = spawn_recorded(launch.command, cwd=launch.cwd, env=launch.env, log_path=log_path,
                             record_path=record_path, url=launch.url, **launch.fields)
    return ServerProcess(process.pid, launch.url, launch.fields["http_port"], launch.fields["model_version"],
                         Path(log_path))


def model_server_launch(
    *, python: Path, model_dir: Path, use_case: str, model_name: str, model_version: str, http_port: int,
    workdir: Path | None = None, host: str = DEFAULT_HOST,
    keepalive_s: int = 5, read_timeout_s: float = 10.0, feature_server_url: str | None = None,
    inference_log_dir: Path | None = None, workers: int = 2, feature_lookup_timeout_s: float = 2.0,
    declaration: dict | None = None, role: str | None = None, threads: int = 1, lookups_in_flight: int = 1,
    stable_control: Path | None = None,
) -> Launch:
    """How to run ``model_server.py PlatformModel`` on ``model_dir``: command, environment, directory, URL.

    Args:
        python: The serving environment's interpreter.
        model_dir: The model bundle directory.
        use_case: The declared use case the model is of (the server reads its declaration).
        declaration: The use case's declaration itself (``use_case_to_dict``), for a use case
            declared outside ``platform_assets/defs/``; the server reads it instead.
        role: The release role (``stable``, ``canary``, ``shadow``) its inference log records, if any.
        model_name: Registered model name (returned with every prediction).
        model_version: Registered model version (returned with every prediction).
        http_port: REST port (checked free now).
        workdir: The server's working directory; default ``deploy/serving``. The
            model class is importable from any directory (it is on ``PYTHONPATH``).
        host: Address the REST and metrics ports listen on: loopback by default;
            ``0.0.0.0`` exposes the unauthenticated server to the network.
        keepalive_s: Seconds an idle connection (new or kept alive) stays open.
        read_timeout_s: Seconds a client has to send one whole request.
        feature_server_url: The Feast feature server the request features read online features
            from; without it only requests carrying every model input can be scored.
        inference_log_dir: Where the server logs every prediction (``None``: no log).
        workers: gunicorn worker processes.
        threads: Requests one worker scores at once: 1 scores on the worker's event loop (the
            model is CPU-bound); more overlap the waits of a model that looks features up.
        feature_lookup_timeout_s: Per-request bound on the feature lookup (then 503).
        lookups_in_flight: POSTs to the feature server at once per worker; the lookups that
            arrive meanwhile are coalesced into one POST (``deploy/serving/online_features.py``).
            0: every request posts on its own.
        stable_control: The router's control socket (``platform_assets/deploy/handoff.py``): while the
            routes send every request to this server, its workers accept the stable port's connections.

    Raises:
        FileNotFoundError: If the serving environment is missing (run ``make install``).
        OSError: If ``http_port`` is taken.
    """
    if not Path(python).exists():
        raise FileNotFoundError(f"{python} not found: create the serving environment with `make install`")
    port_is_free(host, http_port)  # else a server of another state root would answer our health checks
    metrics_port = free_port()  # Seldon's default 6000 would clash between servers
    env = config.child_environment(MODEL_DIR=str(Path(model_dir).resolve()), USE_CASE=use_case, MODEL_NAME=model_name,
                                   MODEL_VERSION=str(model_version),
                                   PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), str(SERVING_DIR)]))
    if role:
        env["SERVING_ROLE"] = role
    else:
        env.pop("SERVING_ROLE", None)
    if declaration is not None:
        env["USE_CASE_DECLARATION"] = json.dumps(declaration)
    else:
        env.pop("USE_CASE_DECLARATION", None)
    env.setdefault("OMP_NUM_THREADS", "1")  # several worker processes share the cores
    env["GUNICORN_WORKERS"] = str(workers)
    env["GUNICORN_THREADS"] = str(threads)
    env["FEATURE_LOOKUP_TIMEOUT_S"] = str(feature_lookup_timeout_s)
    env["FEATURE_LOOKUP_IN_FLIGHT"] = str(lookups_in_flight)
    url = f"http://{client_host(host)}:{http_port}"
    for name, value in (("FEATURE_SERVER_URL", feature_server_url), ("INFERENCE_LOG_DIR", inference_log_dir),
                        ("SERVING_STABLE_CONTROL", stable_control), ("SERVING_UPSTREAM_URL", stable_control and url)):
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
    return Launch(command, env, cwd, url, {
        "host": host, "http_port": http_port, "metrics_port": metrics_port, "model_name": model_name,
        "model_version": str(model_version), "model_dir": env["MODEL_DIR"], "feature_server_url": feature_server_url,
        "inference_log_dir": str(inference_log_dir) if inference_log_dir else None})


def wait_until_healthy(server: ServerProcess, timeout_s: float = 60.0) -> float:
    """Polls ``GET {url}/health/ping`` until it answers 200 while the server runs; returns the seconds waited.

    The ping answers only once the gunicorn worker has loaded the model.

    Raises:
        RuntimeError: If the process died or ``timeout_s`` passed; includes the log's tail.
    """
    return wait_until_answers(server.url + HEALTH_PATH, pid=server.pid, log_path=server.log_path,
                              timeout_s=timeout_s, what="model server")


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


# Sent with the platform's own requests to a model server (smoke tests, checks): the server logs
# them apart from callers' traffic (``<inference log>/smoke/``), and the router drops it from callers.
PLATFORM_TRAFFIC_HEADER = "X-Platform-Traffic"


def predict_over_http(url: str, rows: list[dict], timeout_s: float = 30.0,
                      platform_traffic: str | None = None) -> tuple[list[float], dict]:
    """Scores ``rows`` (column -> value) on the server at ``url``.

    Sends ``{"data": {"names": [...], "ndarray": [[...], ...]}}`` to ``/api/v1.0/predictions``;
    with ``platform_traffic`` (e.g. ``smoke``), marked as the platform's own traffic, which the
    server keeps out of the production inference log.

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
    headers = {PLATFORM_TRAFFIC_HEADER: platform_traffic} if platform_traffic else None
    response = requests.post(url + PREDICT_PATH, json=payload, timeout=timeout_s, headers=headers)
    if response.status_code != 200:
        raise ModelServerError(url, response.status_code, response.text)
    body = json.loads(response.text, parse_constant=_no_constant)
    values = body["data"]["ndarray"]
    return [float(v[0]) if isinstance(v, list) else float(v) for v in values], body.get("meta", {})

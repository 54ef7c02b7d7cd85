"""The local Feast feature server (``feast serve``): online features by entity id over HTTP.

Plain functions, no Dagster. Started by the deployment beside the model server
and run like it (its own session, a record file, stopped as a process group):
the process helpers are :mod:`platform_assets.deploy.processes`. Started
with ``watch_pid``, the server runs under a small watchdog (this module's
``__main__``) that stops it when the watched model server is gone, so stopping
the model server never leaves a feature server behind.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from platform_assets import config, settings
from platform_assets.deploy.processes import (
    Launch,
    free_port,
    is_alive,
    spawn_recorded,
    stop_recorded,
    wait_until_answers,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEALTH_PATH = "/health"
ONLINE_PATH = "/get-online-features"
_FEAST_MARKERS = (b"feast",)  # in the command line of the server or its watchdog


@dataclass(frozen=True)
class FeatureServerProcess:
    """A started feature server."""

    pid: int
    url: str
    port: int
    log_path: Path


def feast_executable() -> Path:
    """The ``feast`` script of the running environment."""
    return Path(sys.executable).absolute().parent / "feast"


def stop_feature_server(record_path: Path, grace_s: float = 5.0) -> bool:
    """Stops the recorded feature server's process group; removes ``record_path``.

    Returns:
        Whether a server was running.
    """
    return stop_recorded(record_path, _FEAST_MARKERS, "feature server", grace_s)


def start_feature_server(
    *, repo_path: Path, state_root: Path, log_path: Path, record_path: Path, port: int | None = None,
    watch_pid: int | None = None, feast: Path | None = None, workers: int = 2,
) -> FeatureServerProcess:
    """Starts ``feast serve`` on the repository, replacing a running one.

    Args:
        repo_path: The Feast repository (``feature_repo/``).
        state_root: ``PLATFORM_HOME`` of the registry and online store it serves.
        log_path: Server output is appended here.
        record_path: Where the running server is recorded (JSON).
        port: HTTP port on 127.0.0.1; default: a free one.
        watch_pid: Stop the server when this process (the model server) is gone.
        feast: The ``feast`` script; default: the running environment's.
        workers: ``feast serve`` worker processes (gunicorn): lookups of several model-server
            workers are answered side by side. The SQLite online store is read by each
            worker with its own connection (tested under concurrent lookups and writes);
            production uses Redis (``feature_repo/feature_store.prod.yaml``).

    Returns:
        The started (not yet ready) server: see :func:`wait_until_ready`.
    """
    stop_feature_server(record_path)
    launch = feature_server_launch(repo_path=repo_path, state_root=state_root, port=port, feast=feast,
                                   workers=workers, run_dir=Path(record_path).parent / "run")
    command = launch.command
    if watch_pid is not None:
        command = [sys.executable, "-m", "platform_assets.deploy.feature_server", "--watch", str(watch_pid),
                   "--", *command]
    process = spawn_recorded(command, cwd=launch.cwd, env=launch.env, log_path=log_path, record_path=record_path,
                             url=launch.url, watch_pid=watch_pid, **launch.fields)
    return FeatureServerProcess(process.pid, launch.url, launch.fields["port"], Path(log_path))


def feature_server_launch(*, repo_path: Path, state_root: Path, port: int | None = None, feast: Path | None = None,
                          workers: int = 2, run_dir: Path | None = None) -> Launch:
    """How to run ``feast serve`` on the repository: command, environment, directory and URL.

    Args:
        repo_path: The Feast repository (``feature_repo/``).
        state_root: ``PLATFORM_HOME`` of the registry and online store it serves.
        port: HTTP port on 127.0.0.1; default: a free one.
        feast: The ``feast`` script; default: the running environment's.
        workers: ``feast serve`` worker processes (gunicorn).
        run_dir: A private folder for gunicorn's control socket; without it gunicorn puts it in
            ``~/.gunicorn/``, one socket for every server of the user on the machine.
    """
    if workers < 1:
        raise ValueError(f"feature server workers must be at least 1, got {workers}")
    if config.profile() == config.PROD_PROFILE:
        # Feast's SQL registry opens its connection pool before gunicorn forks: workers would share one
        # PostgreSQL connection and read each other's answers ("This result object does not return rows").
        # One worker per server; more servers (replicas on Kubernetes) for more lookups.
        workers = 1
    port = port or free_port()
    script = Path(feast or feast_executable())
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: install the platform environment with `make install`")
    # The registry is re-read every 5 s, so a re-applied repository is served without a restart.
    # --max-requests 0: Feast's default (1000) restarts a worker every thousand requests, and a
    # restart on a loaded machine outlasts the model server's lookup deadline (bursts of 503s).
    command = [str(script), "--feature-store-yaml", str(settings.feature_store_yaml()), "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--max-requests", "0", "--no-access-log",
               "--registry_ttl_sec", "5"]
    env = config.child_environment((str(PROJECT_ROOT),), PLATFORM_HOME=str(Path(state_root).resolve()))
    if run_dir is not None:  # gunicorn reads XDG_RUNTIME_DIR for its control socket (feast serve has no flag)
        Path(run_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(Path(run_dir).resolve())
    return Launch(command, env, Path(repo_path), f"http://127.0.0.1:{port}",
                  {"port": port, "repo_path": str(repo_path), "state_root": env["PLATFORM_HOME"]})


def wait_until_ready(server: FeatureServerProcess, timeout_s: float = 90.0) -> float:
    """Polls ``GET {url}/health`` until it answers 200 while the server runs; returns the seconds waited.

    Raises:
        RuntimeError: If the process exited or ``timeout_s`` passed; includes the log's tail.
    """
    return wait_until_answers(server.url + HEALTH_PATH, pid=server.pid, log_path=server.log_path,
                              timeout_s=timeout_s, what="feature server")


def online_features_over_http(
    url: str, feature_service: str, entities: dict[str, list], timeout_s: float = 30.0
) -> "pandas.DataFrame":  # noqa: F821
    """The feature service's online features for ``entities``, from the feature server.

    Args:
        url: The feature server's base URL.
        feature_service: Name of the feature service.
        entities: Join key -> one value per entity row (``{"<join key>": [...], ...}``).

    Returns:
        One row per entity: the join keys and every feature, as the SDK's
        ``get_online_features(...).to_dict()`` gives them.

    Raises:
        RuntimeError: On a non-200 answer, with its status and body.
    """
    import pandas as pd
    import requests

    payload = {"feature_service": feature_service, "entities": entities, "full_feature_names": False}
    response = requests.post(url + ONLINE_PATH, json=payload, timeout=timeout_s)
    if response.status_code != 200:
        raise RuntimeError(f"feature server {url} answered HTTP {response.status_code}: {response.text[:2000]}")
    body = response.json()
    names = body["metadata"]["feature_names"]
    return pd.DataFrame({name: result["values"] for name, result in zip(names, body["results"])})


def differing_values(served: "pandas.DataFrame", sdk: "pandas.DataFrame") -> int | None:  # noqa: F821
    """Values the feature server answered that differ from the SDK's (both missing counts as equal).

    Returns:
        The count, or ``None`` when the two do not even have the same columns and rows.
    """
    if set(served.columns) != set(sdk.columns) or len(served) != len(sdk):
        return None
    served = served[sdk.columns].reset_index(drop=True)
    sdk = sdk.reset_index(drop=True)
    return int((~((served == sdk) | (served.isna() & sdk.isna()))).to_numpy().sum())


def _watch(pid: int, command: list[str]) -> int:
    """Runs ``command`` until it exits or process ``pid`` is gone; returns its exit status."""
    child = subprocess.Popen(command)
    while child.poll() is None:
        if not is_alive(pid):
            child.terminate()
            try:
                return child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()
        time.sleep(1.0)
    return child.returncode


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run a command while another process lives.")
    parser.add_argument("--watch", type=int, required=True, help="pid whose exit stops the command")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sys.exit(_watch(args.watch, command))

"""Blue/green releases of a use case's model behind its router (:mod:`platform_assets.deploy.router`).

Plain functions, no Dagster. A release starts the new version (a model server and
the Feast feature server it reads) on free ports beside the one serving, waits until
it is healthy, smoke-tests it (its answers over HTTP equal the bundle's offline
predictions), and only then points the stable endpoint at it, waits until the old
version has no request in flight and stops it. When any step fails the new
version is stopped, the old one keeps serving and :class:`ReleaseError` says why.
A shadow (a copy of live traffic, answers logged, never returned) or a canary (a
share of traffic) is started the same way and added to the routes.

Everything a release runs is recorded under the use case's serving folder:
``router.json`` (the router process), ``routes.json`` (where requests go),
``backends/<role>-<version>-<id>.json`` and ``...feature.json`` (each running
version's two servers) and ``release.json`` (what serves in which role, and the
versions that served before, for a rollback). :func:`stop_serving` stops them all.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from platform_assets.deploy import feature_server as features
from platform_assets.deploy import serving
from platform_assets.deploy.processes import read_record, spawn_recorded, stop_recorded, wait_until_answers
from platform_assets.deploy.router import ADMIN_PATH, Routes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROUTER_RECORD, ROUTES_FILE, RELEASE_FILE, BACKENDS = "router.json", "routes.json", "release.json", "backends"
_ROUTER_MARKERS = (b"platform_assets.deploy.router",)
ROLES = ("stable", "canary", "shadow")


class ReleaseError(RuntimeError):
    """A release that did not happen: the version serving before still serves."""


class NothingApplied(ReleaseError):
    """A release refused before it changed anything (an invalid manifest, say)."""


@dataclass(frozen=True)
class Backend:
    """One running version: its model server and the feature server it reads."""

    role: str
    version: str
    url: str
    pid: int
    bundle: str
    record: str
    feature_server_url: str
    feature_server_pid: int
    feature_record: str


@dataclass(frozen=True)
class BackendSpec:
    """How to start a version: the serving environment, the bundle and what the server needs."""

    python: Path
    bundle: Path
    use_case: str
    declaration: dict
    model_name: str
    version: str
    feature_repo: Path | None  # None: the use case reads no online features (no feature server)
    state_root: Path
    inference_log_dir: Path
    workers: int = 2
    feature_server_workers: int = 2
    # Requests a model-server worker scores at once while it waits on the feature server.
    lookup_threads: int = 8
    # Feature-server POSTs at once per worker; lookups beyond are coalesced into one POST (0: never).
    lookups_in_flight: int = 1
    feature_lookup_timeout_s: float = 2.0
    start_timeout_s: float = 120.0


@dataclass(frozen=True)
class ReleaseRequest:
    """What a deployer is asked to release, whatever its target (``platform_assets.resources.Deployer``)."""

    use_case: object  # platform_assets.declarations.UseCase
    declaration: dict
    version: str
    bundle_dir: Path
    smoke_rows: object  # a DataFrame of test rows with the model's inputs
    serving_dir: Path
    port_offset: int
    feature_repo: Path | None
    state_root: Path
    inference_log_dir: Path
    role: str = "stable"
    canary_weight: float = 0.1


def start_backend(spec: BackendSpec, serving_dir: Path, role: str = "stable") -> Backend:
    """Starts ``spec``'s model server and its feature server on free loopback ports and waits until both answer.

    Raises:
        ReleaseError: If either does not come up (both are stopped again; the message has the log's tail).
    """
    serving_dir = Path(serving_dir)
    name = f"{role}-{spec.version}-{uuid.uuid4().hex[:8]}"
    record = serving_dir / BACKENDS / f"{name}.json"
    feature_record = serving_dir / BACKENDS / f"{name}.feature.json"
    http_port = serving.free_port()
    feature_port = serving.free_port()
    while feature_port == http_port:
        feature_port = serving.free_port()
    inference_log_dir = Path(spec.inference_log_dir) / "shadow" if role == "shadow" else Path(spec.inference_log_dir)
    try:
        process = serving.start_model_server(
            python=spec.python, model_dir=spec.bundle, use_case=spec.use_case, declaration=spec.declaration,
            model_name=spec.model_name, model_version=spec.version, http_port=http_port,
            log_path=serving_dir / "logs" / f"{name}.log", record_path=record,
            feature_server_url=f"http://127.0.0.1:{feature_port}" if spec.feature_repo else None,
            inference_log_dir=inference_log_dir,
            workers=spec.workers, feature_lookup_timeout_s=spec.feature_lookup_timeout_s, role=role,
            threads=spec.lookup_threads if spec.feature_repo else 1, lookups_in_flight=spec.lookups_in_flight,
        )
        feature = None
        if spec.feature_repo:  # it lives as long as the model server it feeds (it watches its pid)
            feature = features.start_feature_server(
                repo_path=Path(spec.feature_repo), state_root=Path(spec.state_root),
                log_path=serving_dir / "logs" / f"{name}.feature.log", record_path=feature_record,
                port=feature_port, watch_pid=process.pid, workers=spec.feature_server_workers,
            )
        serving.wait_until_healthy(process, timeout_s=spec.start_timeout_s)
        if feature:
            features.wait_until_ready(feature, timeout_s=spec.start_timeout_s)
    except (OSError, RuntimeError) as exc:
        _stop_files(record, feature_record)
        raise ReleaseError(f"version {spec.version} did not start ({role}): {exc}") from None
    return Backend(role, str(spec.version), process.url, process.pid, str(spec.bundle), str(record),
                   feature.url if feature else "", feature.pid if feature else 0, str(feature_record))


def _stop_orphans(serving_dir: Path, current: dict) -> None:
    """Stops recorded versions the release record does not name (left by a release that was killed midway)."""
    known = {current[role]["record"] for role in ROLES if current.get(role)}
    for record in (serving_dir / BACKENDS).glob("*.json"):
        if not record.name.endswith(".feature.json") and str(record) not in known:
            _stop_files(record, record.with_name(record.stem + ".feature.json"))


def smoke_test_against_bundle(url: str, bundle_dir: Path, rows, version: str, tolerance: float = 1e-5) -> str | None:
    """``None`` when the server at ``url`` answers ``rows`` (a DataFrame with the model's inputs) as the bundle
    does offline, to ``tolerance``, tagged with ``version``; else what differed."""
    import numpy as np

    from platform_assets.train.network import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    if not len(rows):
        return "no rows to smoke-test with"
    try:
        served, meta = serving.predict_over_http(url, rows[bundle.preprocessor.input_names].to_dict("records"))
    except (OSError, RuntimeError, ValueError) as exc:
        return f"the server did not answer: {exc}"
    offline = bundle.predict_proba(rows)
    difference = float(np.max(np.abs(np.asarray(served) - offline)))
    answered = str((meta.get("tags") or {}).get("model_version"))
    if difference > tolerance:
        return f"served predictions differ from the bundle's by up to {difference:.3g} (> {tolerance:g})"
    if answered != str(version):
        return f"answers are tagged version {answered}, not {version}"
    return None


def _stop_files(record: Path | str, feature_record: Path | str) -> None:
    serving.stop_model_server(Path(record))
    features.stop_feature_server(Path(feature_record))


def stop_backend(backend: Backend) -> None:
    """Stops a version's model server and feature server, and removes their records."""
    _stop_files(backend.record, backend.feature_record)


def read_release(serving_dir: Path) -> dict:
    """What serves now (``stable``, ``canary``, ``shadow``: a :class:`Backend` as a dict or ``None``) and the
    ``history`` of versions that served as stable before (newest last)."""
    data = read_record(Path(serving_dir) / RELEASE_FILE) or {}
    return {**{role: data.get(role) for role in ROLES}, "history": data.get("history", []),
            "canary_weight": data.get("canary_weight", 0.0), "rolled_back": data.get("rolled_back", [])}


def previous_version(serving_dir: Path) -> dict:
    """The version (``version``, ``bundle``) that served as stable before the one serving now.

    Raises:
        ReleaseError: If nothing serves, or nothing served before it (there is nothing to roll back to).
    """
    current = read_release(serving_dir)
    if not current["stable"]:
        raise ReleaseError(f"nothing is serving from {serving_dir}: nothing to roll back")
    if not current["history"]:
        raise ReleaseError(f"version {current['stable']['version']} is the first that served: nothing to roll back to")
    return current["history"][-1]


def _write_release(serving_dir: Path, release: dict) -> None:
    path = Path(serving_dir) / RELEASE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(release, indent=2))
    os.replace(tmp, path)


def _router_status(url: str, reload: bool = False, timeout_s: float = 5.0) -> dict:
    import requests

    call = requests.post if reload else requests.get
    response = call(url + ADMIN_PATH + ("/reload" if reload else ""), timeout=timeout_s)
    if response.status_code != 200:
        raise ReleaseError(f"router {url} did not take the routes: HTTP {response.status_code} {response.text[:500]}")
    return response.json()


def router_url(serving_dir: Path) -> str | None:
    """The URL of the use case's running router, if one runs."""
    record = read_record(Path(serving_dir) / ROUTER_RECORD)
    if not record:
        return None
    from platform_assets.deploy.processes import group_alive

    return record["url"] if group_alive(record["pid"]) else None


def ensure_router(serving_dir: Path, host: str, port: int, timeout_s: float = 30.0) -> str:
    """The router on ``host:port`` (the stable endpoint), started on the routes file if it is not running."""
    serving_dir = Path(serving_dir)
    record = read_record(serving_dir / ROUTER_RECORD)
    url = f"http://{serving.client_host(host)}:{port}"
    if record and record.get("url") == url and router_url(serving_dir):
        return url
    stop_recorded(serving_dir / ROUTER_RECORD, _ROUTER_MARKERS, "router")
    # A model server of a release before routers held the stable port itself: hand the port over.
    _stop_files(serving_dir / "server.json", serving_dir / "feature_server.json")
    serving.port_is_free(host, port)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    process = spawn_recorded(
        [sys.executable, "-m", "platform_assets.deploy.router", "--routes", str(serving_dir / ROUTES_FILE),
         "--host", host, "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, log_path=serving_dir / "logs" / "router.log",
        record_path=serving_dir / ROUTER_RECORD, url=url, port=port, host=host)
    wait_until_answers(url + ADMIN_PATH, pid=process.pid, log_path=serving_dir / "logs" / "router.log",
                       timeout_s=timeout_s, what="router")
    return url


def _drain(url: str, upstream: str, timeout_s: float) -> None:
    """Waits until the router has no request in flight to ``upstream`` (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _router_status(url).get("in_flight", {}).get(upstream):
            return
        time.sleep(0.05)


def apply_routes(serving_dir: Path, routes: Routes, host: str, port: int) -> str:
    """Writes ``routes`` and makes the router follow them (starting it if needed); returns the stable URL.

    Raises:
        ReleaseError: If the router does not report the new routes in force.
    """
    serving_dir = Path(serving_dir)
    routes.write(serving_dir / ROUTES_FILE)
    url = ensure_router(serving_dir, host, port)
    now = _router_status(url, reload=True)["routes"]
    if now != asdict(routes):
        raise ReleaseError(f"router {url} reports routes {now}, not {asdict(routes)}")
    return url


def _routes_of(release: dict) -> Routes:
    stable, canary, shadow = (release.get(r) for r in ROLES)
    return Routes(stable=stable["url"], canary=canary["url"] if canary else None,
                  canary_weight=float(release.get("canary_weight") or 0.0) if canary else 0.0,
                  shadow=shadow["url"] if shadow else None)


def release(spec: BackendSpec, serving_dir: Path, *, host: str, port: int,
            smoke_test: Callable[[str], str | None], role: str = "stable", canary_weight: float = 0.1,
            drain_timeout_s: float = 30.0, log: Callable[[str], None] = print, rollback: bool = False) -> dict:
    """Starts ``spec`` beside what serves, smoke-tests it and gives it ``role``; returns the release record.

    Args:
        smoke_test: Called with the new version's own URL; returns ``None`` when it answers as its bundle
            does, else what was wrong.
        role: ``stable`` (blue/green: the new version takes over the stable endpoint), ``canary`` (it
            answers ``canary_weight`` of requests) or ``shadow`` (a copy of traffic, answers not returned).
        rollback: ``spec`` is the newest version of the history (:func:`previous_version`), returning to serve.

    Raises:
        ReleaseError: If the new version did not start, failed its smoke test or the router did not take
            it; it is stopped and what served before still serves.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    serving_dir = Path(serving_dir)
    current = read_release(serving_dir)
    _stop_orphans(serving_dir, current)
    if role != "stable" and not current["stable"]:
        raise ReleaseError(f"a {role} needs a stable version serving first")
    new = start_backend(spec, serving_dir, role)
    serving_before = current["stable"]["version"] if current["stable"] else "none"
    problem = smoke_test(new.url)
    if problem:
        stop_backend(new)
        raise ReleaseError(f"version {spec.version} failed its smoke test: {problem}; "
                           f"version {serving_before} keeps serving")
    replaced = current[role]
    updated = {**current, role: asdict(new)}
    if role == "stable" and current["stable"]:
        updated["history"] = [*current["history"], {k: current["stable"][k] for k in ("version", "bundle")}]
    if rollback:  # the version rolled back to leaves the history; the one rolled back from does not join it
        updated["history"] = current["history"][:-1]
        updated["rolled_back"] = [*current.get("rolled_back", []), current["stable"]["version"]]
    if role == "canary":
        updated["canary_weight"] = canary_weight
    # A version that becomes stable no longer needs its shadow or canary (as on Kubernetes, where the
    # SeldonDeployment of a stable release has neither): they leave with the switch.
    retired = [updated[r] for r in ("canary", "shadow")
               if role == "stable" and updated[r] and updated[r]["version"] == str(spec.version)]
    for other in ("canary", "shadow"):
        if updated[other] in retired:
            updated[other] = None
    try:
        url = apply_routes(serving_dir, _routes_of(updated), host, port)
    except (OSError, RuntimeError) as exc:
        stop_backend(new)
        if current["stable"]:
            apply_routes(serving_dir, _routes_of(current), host, port)
        raise ReleaseError(f"version {spec.version} not switched to: {exc}; version {serving_before} keeps serving")
    _write_release(serving_dir, updated)
    log(f"{role}: version {spec.version} at {new.url} behind {url}"
        + (f" (replacing version {replaced['version']})" if replaced else ""))
    for gone in [replaced, *retired] if replaced else retired:
        _drain(url, gone["url"], drain_timeout_s)
        stop_backend(Backend(**gone))
        if gone is not replaced:
            log(f"{gone['role']}: version {gone['version']} stopped (it is the stable version now)")
    return {**updated, "url": url}


def end_role(serving_dir: Path, role: str, *, host: str, port: int, promote: bool = False) -> dict:
    """Stops the ``canary`` or ``shadow`` version, or with ``promote`` makes it the stable one."""
    serving_dir = Path(serving_dir)
    current = read_release(serving_dir)
    ending = current.get(role)
    if not ending:
        raise ReleaseError(f"no {role} version is serving")
    updated = {**current, role: None}
    if promote:
        stable = current["stable"]
        updated["stable"] = {**ending, "role": "stable"}
        updated["history"] = [*current["history"], {k: stable[k] for k in ("version", "bundle")}]
    url = apply_routes(serving_dir, _routes_of(updated), host, port)
    _write_release(serving_dir, updated)
    gone = current["stable"] if promote else ending
    _drain(url, gone["url"], 30.0)
    stop_backend(Backend(**gone))
    return {**updated, "url": url}


def stop_serving(serving_dir: Path) -> list[str]:
    """Stops the router and every recorded version (and a pre-router server); returns what was running."""
    serving_dir = Path(serving_dir)
    stopped = []
    if stop_recorded(serving_dir / ROUTER_RECORD, _ROUTER_MARKERS, "router"):
        stopped.append("router")
    for record in sorted((serving_dir / BACKENDS).glob("*.json")):
        if record.name.endswith(".feature.json"):
            if features.stop_feature_server(record):
                stopped.append(f"feature server {record.stem}")
        elif serving.stop_model_server(record):
            stopped.append(f"model server {record.stem}")
    if serving.stop_model_server(serving_dir / "server.json"):
        stopped.append("model server (pre-router)")
    if features.stop_feature_server(serving_dir / "feature_server.json"):
        stopped.append("feature server (pre-router)")
    (serving_dir / RELEASE_FILE).unlink(missing_ok=True)
    return stopped

"""Blue/green releases of a use case's model behind its router (:mod:`platform_assets.deploy.router`).

Plain functions, no Dagster. A release starts the new version (a model server and
the Feast feature server it reads) on free ports beside the one serving, waits until
it is healthy, smoke-tests it (its answers over HTTP equal the bundle's offline
predictions), and only then points the stable endpoint at it, waits until the old
version has no request in flight and stops it. When any step fails the new
version is stopped, the old one keeps serving and :class:`ReleaseError` says why.
A shadow (a copy of live traffic, answers logged, never returned) or a canary (a
share of traffic) is started the same way and added to the routes.

Everything a release runs is supervised (:mod:`platform_assets.deploy.supervision`):
one ``supervisord`` per serving folder runs the router (program group ``router``) and
each version's model server and feature server (group ``<role>-<version>-<id>``), and
starts any of them again within seconds when it dies. The serving folder holds
``router.json`` (the router's URLs), ``routes.json`` (where requests go) and
``release.json`` (what serves in which role, and the versions that served before, for
a rollback). :func:`stop_serving` stops them all.
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

from platform_assets import config
from platform_assets.deploy import feature_server as features
from platform_assets.deploy import handoff
from platform_assets.deploy import serving
from platform_assets.deploy.processes import free_port, read_record, stop_recorded
from platform_assets.deploy.router import ADMIN_PATH, Routes
from platform_assets.deploy.supervision import Program, SupervisionError, Supervisor

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROUTER_RECORD, ROUTES_FILE, RELEASE_FILE, BACKENDS = "router.json", "routes.json", "release.json", "backends"
ROUTER_GROUP = "router"
_ROUTER_MARKERS = (b"platform_assets.deploy.router",)
ROLES = ("stable", "canary", "shadow")


class ReleaseError(RuntimeError):
    """A release that did not happen: the version serving before still serves."""


class NothingApplied(ReleaseError):
    """A release refused before it changed anything (an invalid manifest, say)."""


@dataclass(frozen=True)
class Backend:
    """One running version: its model server and the feature server it reads, a supervised group.

    ``pid`` and ``feature_server_pid`` are the processes first started; supervisord replaces
    a process that dies (``Supervisor.pid`` gives the current one).
    """

    role: str
    version: str
    url: str
    pid: int
    bundle: str
    group: str
    feature_server_url: str
    feature_server_pid: int

    @classmethod
    def of(cls, record: dict) -> "Backend":
        """The backend of a release record's entry (fields of older records ignored)."""
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields.setdefault("group", "")  # a release made before supervision: nothing supervised to stop
        return cls(**fields)


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
    """Starts ``spec``'s model server and its feature server, supervised, on free loopback ports,
    and waits until both answer.

    Raises:
        ReleaseError: If either does not come up (both are stopped again; the message has the log's tail).
    """
    serving_dir = Path(serving_dir)
    name = f"{role}-{spec.version}-{uuid.uuid4().hex[:8]}"
    http_port = free_port()
    feature_port = free_port()
    while feature_port == http_port:
        feature_port = free_port()
    inference_log_dir = Path(spec.inference_log_dir) / "shadow" if role == "shadow" else Path(spec.inference_log_dir)
    supervisor = Supervisor(serving_dir)
    model_log, feature_log = serving_dir / "logs" / f"{name}.log", serving_dir / "logs" / f"{name}.feature.log"
    try:
        model = serving.model_server_launch(
            python=spec.python, model_dir=spec.bundle, use_case=spec.use_case, declaration=spec.declaration,
            model_name=spec.model_name, model_version=spec.version, http_port=http_port,
            feature_server_url=f"http://127.0.0.1:{feature_port}" if spec.feature_repo else None,
            inference_log_dir=inference_log_dir,
            workers=spec.workers, feature_lookup_timeout_s=spec.feature_lookup_timeout_s, role=role,
            threads=spec.lookup_threads if spec.feature_repo else 1, lookups_in_flight=spec.lookups_in_flight,
            stable_control=handoff.control_path(serving_dir),
        )
        programs = [Program("model", model.command, model.env, model.cwd, model_log)]
        feature = None
        if spec.feature_repo:
            feature = features.feature_server_launch(
                repo_path=Path(spec.feature_repo), state_root=Path(spec.state_root), port=feature_port,
                workers=spec.feature_server_workers, run_dir=serving_dir / "run" / name)
            programs.append(Program("feature", feature.command, feature.env, feature.cwd, feature_log))
        supervisor.add(name, programs)
        supervisor.wait_until_answers(model.url + serving.HEALTH_PATH, name, "model", log_path=model_log,
                                      timeout_s=spec.start_timeout_s, what=f"model server {spec.version}")
        if feature:
            supervisor.wait_until_answers(feature.url + features.HEALTH_PATH, name, "feature", log_path=feature_log,
                                          timeout_s=spec.start_timeout_s, what=f"feature server of {spec.version}")
        pids = (supervisor.pid(name, "model"), supervisor.pid(name, "feature") if feature else 0)
    except (OSError, RuntimeError) as exc:
        supervisor.remove(name)
        raise ReleaseError(f"version {spec.version} did not start ({role}): {exc}") from None
    return Backend(role, str(spec.version), model.url, pids[0], str(spec.bundle), name,
                   feature.url if feature else "", pids[1])


def _stop_orphans(serving_dir: Path, current: dict) -> None:
    """Stops supervised versions the release record does not name (left by a release that was killed midway),
    and servers of a release made before supervision (record files under ``backends/``)."""
    known = {current[role].get("group") for role in ROLES if current.get(role)}
    supervisor = Supervisor(serving_dir)
    for conf in (supervisor.dir / "programs").glob("*.conf"):
        if conf.stem != ROUTER_GROUP and conf.stem not in known:
            supervisor.remove(conf.stem)
    for record in (Path(serving_dir) / BACKENDS).glob("*.json"):
        if record.name.endswith(".feature.json"):
            features.stop_feature_server(record)
        else:
            serving.stop_model_server(record)


def smoke_test_against_bundle(url: str, bundle_dir: Path, rows, version: str, tolerance: float = 1e-5,
                              use_case=None) -> str | None:
    """``None`` when the server at ``url`` answers ``rows`` (a DataFrame with the model's inputs) as the bundle
    does offline, to ``tolerance``, tagged with ``version``; else what differed.

    With ``use_case`` (one that looks features up online), the rows are also sent as callers send them
    (:func:`warm_lookups`), so the version's feature lookups are warm before it gets any traffic.
    Every request is marked as the platform's own (``smoke``): none lands in the production log.
    """
    import numpy as np

    from platform_assets.train.network import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    if not len(rows):
        return "no rows to smoke-test with"
    try:
        served, meta = serving.predict_over_http(url, rows[bundle.preprocessor.input_names].to_dict("records"),
                                                 platform_traffic="smoke")
    except (OSError, RuntimeError, ValueError) as exc:
        return f"the server did not answer: {exc}"
    offline = bundle.predict_proba(rows)
    difference = float(np.max(np.abs(np.asarray(served) - offline)))
    answered = str((meta.get("tags") or {}).get("model_version"))
    if difference > tolerance:
        return f"served predictions differ from the bundle's by up to {difference:.3g} (> {tolerance:g})"
    if answered != str(version):
        return f"answers are tagged version {answered}, not {version}"
    if use_case is not None:
        return warm_lookups(url, rows, use_case, version, bundle.preprocessor)
    return None


def caller_rows(rows, use_case, preprocessor) -> list[dict]:
    """``rows`` as a caller sends them: ids and the row's own fields, without the features the server
    looks up and computes (the use case's request features)."""
    module = use_case.request_features_module()
    computed = set(getattr(module, "COMPUTED", ()))
    own = [c for c in preprocessor.numeric if c not in computed]
    own += [c for c in getattr(module, "NEEDS", ()) if c not in own]
    columns = [*use_case.id_columns(), *own, *preprocessor.categorical]
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise KeyError(f"the smoke rows lack {missing}")
    return rows[columns].to_dict("records")


def warm_lookups(url: str, rows, use_case, version: str, preprocessor, callers: int = 8) -> str | None:
    """``None`` when the server at ``url`` answers each of ``rows``, sent as a caller would (ids and own
    fields, one row a request, ``callers`` at once, so that every worker of the model server and of its
    feature server answers some), with a finite probability tagged ``version``; else what was wrong.

    Use cases without online features have nothing to warm.
    """
    from concurrent.futures import ThreadPoolExecutor

    module = use_case.request_features_module()
    if module is None or not getattr(module, "ONLINE_ENTITY", None):
        return None
    try:
        requests_ = caller_rows(rows, use_case, preprocessor)
    except KeyError as exc:
        return f"cannot send the rows as callers do: {exc}"

    def one(row: dict) -> str | None:
        try:
            served, meta = serving.predict_over_http(url, [row], platform_traffic="smoke")
        except (OSError, RuntimeError, ValueError) as exc:
            return f"a request with ids only ({use_case.source.key} {row.get(use_case.source.key)!r}) failed: {exc}"
        answered = str((meta.get("tags") or {}).get("model_version"))
        if answered != str(version):
            return f"answers through the feature lookup are tagged version {answered}, not {version}"
        if not 0.0 <= served[0] <= 1.0:
            return f"a request through the feature lookup got {served[0]}, not a probability"
        return None

    with ThreadPoolExecutor(callers) as pool:
        problems = [p for p in pool.map(one, requests_) if p]
    return f"{len(problems)} of {len(requests_)} lookups: {problems[0]}" if problems else None


def stop_backend(serving_dir: Path, backend: Backend) -> None:
    """Stops a version's model server and feature server (their whole process groups); supervisord too when
    nothing is left for it to run (a first release that failed)."""
    supervisor = Supervisor(serving_dir)
    if backend.group:
        supervisor.remove(backend.group)
    if not supervisor.configured():
        supervisor.shutdown()


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


def _router_status(admin_url: str, reload: bool = False, timeout_s: float = 5.0) -> dict:
    import requests

    call = requests.post if reload else requests.get
    response = call(admin_url + ADMIN_PATH + ("/reload" if reload else ""), timeout=timeout_s)
    if response.status_code != 200:
        raise ReleaseError(f"router {admin_url} did not take the routes: HTTP {response.status_code} "
                           f"{response.text[:500]}")
    return response.json()


def router_url(serving_dir: Path) -> str | None:
    """The URL of the use case's running router (the stable endpoint), if one runs."""
    record = read_record(Path(serving_dir) / ROUTER_RECORD)
    supervisor = Supervisor(serving_dir)
    if not record or "admin_url" not in record or not supervisor.running():
        return None
    try:
        state = supervisor.info(ROUTER_GROUP, "router")["statename"]
    except SupervisionError:
        return None
    return record["url"] if state in ("RUNNING", "STARTING", "BACKOFF") else None


def ensure_router(serving_dir: Path, host: str, port: int, timeout_s: float = 30.0) -> tuple[str, str]:
    """The router on ``host:port`` (the stable endpoint), started supervised on the routes file if it is not
    running; returns its URL and the URL of its admin port (loopback only)."""
    serving_dir = Path(serving_dir)
    record = read_record(serving_dir / ROUTER_RECORD)
    url = f"http://{serving.client_host(host)}:{port}"
    if record and record.get("url") == url and router_url(serving_dir):
        return url, record["admin_url"]
    Supervisor(serving_dir).remove(ROUTER_GROUP)
    # A router or model server of a release before supervision held the stable port: hand the port over.
    stop_recorded(serving_dir / ROUTER_RECORD, _ROUTER_MARKERS, "router")
    serving.stop_model_server(serving_dir / "server.json")
    features.stop_feature_server(serving_dir / "feature_server.json")
    serving.port_is_free(host, port)
    admin_port = free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    env = config.child_environment((str(PROJECT_ROOT),))
    command = [sys.executable, "-m", "platform_assets.deploy.router", "--routes", str(serving_dir / ROUTES_FILE),
               "--host", host, "--port", str(port), "--admin-port", str(admin_port),
               "--control", str(handoff.control_path(serving_dir))]
    supervisor = Supervisor(serving_dir)
    log_path = serving_dir / "logs" / "router.log"
    supervisor.add(ROUTER_GROUP, [Program("router", command, env, PROJECT_ROOT, log_path)])
    (serving_dir / ROUTER_RECORD).write_text(json.dumps(
        {"url": url, "admin_url": admin_url, "host": host, "port": port, "admin_port": admin_port}, indent=2))
    try:
        supervisor.wait_until_answers(admin_url + ADMIN_PATH, ROUTER_GROUP, "router", log_path=log_path,
                                      timeout_s=timeout_s, what="router")
    except SupervisionError as exc:
        supervisor.remove(ROUTER_GROUP)
        raise ReleaseError(str(exc)) from None
    return url, admin_url


def _drain(admin_url: str, upstream: str, timeout_s: float) -> None:
    """Waits until the router has no request in flight to ``upstream`` (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _router_status(admin_url).get("in_flight", {}).get(upstream):
            return
        time.sleep(0.05)


def apply_routes(serving_dir: Path, routes: Routes, host: str, port: int) -> tuple[str, str]:
    """Writes ``routes`` and makes the router follow them (starting it if needed); returns the stable URL
    and the router's admin URL.

    Raises:
        ReleaseError: If the router does not report the new routes in force.
    """
    serving_dir = Path(serving_dir)
    routes.write(serving_dir / ROUTES_FILE)
    url, admin_url = ensure_router(serving_dir, host, port)
    now = _router_status(admin_url, reload=True)["routes"]
    if now != asdict(routes):
        raise ReleaseError(f"router {url} reports routes {now}, not {asdict(routes)}")
    return url, admin_url


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
        stop_backend(serving_dir, new)
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
        url, admin_url = apply_routes(serving_dir, _routes_of(updated), host, port)
    except (OSError, RuntimeError) as exc:
        stop_backend(serving_dir, new)
        if current["stable"]:
            apply_routes(serving_dir, _routes_of(current), host, port)
        raise ReleaseError(f"version {spec.version} not switched to: {exc}; version {serving_before} keeps serving")
    _write_release(serving_dir, updated)
    log(f"{role}: version {spec.version} at {new.url} behind {url}"
        + (f" (replacing version {replaced['version']})" if replaced else ""))
    for gone in [replaced, *retired] if replaced else retired:
        _drain(admin_url, gone["url"], drain_timeout_s)
        stop_backend(serving_dir, Backend.of(gone))
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
    url, admin_url = apply_routes(serving_dir, _routes_of(updated), host, port)
    _write_release(serving_dir, updated)
    gone = current["stable"] if promote else ending
    _drain(admin_url, gone["url"], 30.0)
    stop_backend(serving_dir, Backend.of(gone))
    return {**updated, "url": url}


def stop_serving(serving_dir: Path) -> list[str]:
    """Stops the router and every version (and servers of releases made before supervision); returns what was
    running."""
    serving_dir = Path(serving_dir)
    supervisor = Supervisor(serving_dir)
    stopped = []
    if supervisor.running():
        groups = sorted(conf.stem for conf in (supervisor.dir / "programs").glob("*.conf"))
        stopped += ["router" if g == ROUTER_GROUP else f"version {g}" for g in groups]
    supervisor.shutdown()
    if stop_recorded(serving_dir / ROUTER_RECORD, _ROUTER_MARKERS, "router"):
        stopped.append("router (unsupervised)")
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
    (serving_dir / ROUTER_RECORD).unlink(missing_ok=True)
    return stopped

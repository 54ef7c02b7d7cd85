"""Lineage of a served prediction, from its request id back to the landing files.

``python -m platform_assets lineage <request id>`` follows one prediction:

1. the inference log (the warehouse table ``monitor.inference_log``, or, before it
   was ingested, the model server's own log files) gives the time, the model
   version, the features the server used and which of them came from the online store;
2. the MLflow registry gives the version's run: Dagster run id, git commit,
   training-set digest and the data versions of the assets it was trained from;
3. Feast's registry gives the feature service, its views and the dbt models they
   are exported from; dbt's manifest the models those read;
4. the warehouse gives the validated and raw partitions and the landing file,
   with its content hash, of the served row itself;
5. the version's run gives the files its training set was built from, as recorded
   when it was built (window, landing and outcome files, their hashes then and the
   rows each gave), each compared with the warehouse's listing now.

``python -m platform_assets lineage --model <name> --version <n>`` gives parts 2, 3 and 5 of a version.

Plain functions; every part says where it was read from, and a part that cannot
be found says why instead of failing the whole trace.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

from platform_assets import settings
from platform_assets.declarations import UseCase
from platform_assets.declared import use_cases
from platform_assets.sql import quoted
from platform_assets.warehouse import profile_warehouse, table_names



class PredictionNotFound(LookupError):
    """No logged prediction has this request id."""


def _warehouse(paths: settings.StatePaths):
    """A read-only connection to the profile's warehouse (lock errors are the caller's to handle)."""
    return profile_warehouse(paths.root).connect(read_only=True, lock_timeout_s=0)


def _has_warehouse(paths: settings.StatePaths) -> bool:
    return profile_warehouse(paths.root).exists()


def find_logged_prediction(paths: settings.StatePaths, request_id: str) -> tuple[list[dict], str, UseCase]:
    """The logged rows of ``request_id`` (one per scored row), where they were read from, and whose use case.

    Looks in each declared use case's ``monitor_<use case>.inference_log`` first,
    then in its server's log files (``<state>/inference/<use case>/day=*/*.jsonl``),
    so a prediction can be traced as soon as it was answered.

    Raises:
        PredictionNotFound: If none holds the request id.
    """
    declared = use_cases()
    if _has_warehouse(paths):
        try:
            with _warehouse(paths) as con:
                tables = table_names(con)
                for use_case in declared:
                    table = use_case.monitor_table("inference_log")
                    if table in tables:
                        rows = con.execute(f"SELECT * FROM {table} WHERE request_id = ? ORDER BY row",
                                           [request_id]).df()
                        if len(rows):
                            return rows.to_dict("records"), f"warehouse table {table}", use_case
        except Exception as exc:  # noqa: BLE001 - a warehouse locked by a writer: the files still answer
            if "lock" not in str(exc).lower():
                raise
    needle = json.dumps(request_id)
    for use_case in declared:
        found, where = [], []
        inference = paths.of(use_case.name).inference
        for path in sorted(glob.glob(str(inference / "day=*" / "*.jsonl"))):
            with open(path, encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, start=1):
                    if needle in line:
                        try:
                            record = json.loads(line)
                        except json.JSONDecodeError:
                            continue
                        if record.get("request_id") == request_id:
                            found.append(record)
                            where.append(f"{path}:{number}")
        if found:
            return sorted(found, key=lambda r: r.get("row", 0)), ", ".join(where), use_case
    raise PredictionNotFound(
        f"request id {request_id!r} is in no use case's inference log table nor its server's log files under "
        f"{paths.root / 'inference'}"
    )


def _plain(value):
    """JSON-friendly scalars (numpy, pandas timestamps, NaN)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _model_lineage(name: str, version: str, paths: settings.StatePaths, use_case: UseCase) -> dict:
    """The registered version, its MLflow run's lineage tags and the files its training set was built from."""
    import mlflow

    from platform_assets.train.tracking import DATA_VERSION_PREFIX

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri(paths.root))
    model_version = client.get_model_version(name, str(version))
    run = client.get_run(model_version.run_id)
    tags = run.data.tags
    aliases = list(getattr(model_version, "aliases", []) or [])
    return {
        "model": {"name": name, "version": str(version), "aliases": aliases, "gate": model_version.tags.get("gate"),
                  "weights_sha256": model_version.tags.get("weights_sha256")},
        "mlflow_run": {
            "run_id": run.info.run_id,
            "url": settings.mlflow_run_url(run.info.experiment_id, run.info.run_id),
            "dagster_run_id": tags.get("dagster_run_id"),
            "git_commit": tags.get("git_commit"),
            "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        },
        "training_set": {
            "digest": tags.get("training_set_data_version"),
            "mlflow_dataset_digests": [d.dataset.digest for d in run.inputs.dataset_inputs],
            "data_versions": {k[len(DATA_VERSION_PREFIX):]: v for k, v in tags.items() if k.startswith(DATA_VERSION_PREFIX)},
        },
        "training_data": training_files(client, run.info.run_id, paths, use_case),
    }


def _feature_lineage(root: Path, use_case: UseCase) -> dict:
    """The model's feature service, its views and the dbt models they come from (and what those read)."""
    FEATURE_SERVICE, ONLINE_FEATURE_SERVICE = use_case.feature_service, use_case.online_feature_service  # noqa: N806

    out: dict = {"feature_service": FEATURE_SERVICE}
    registry = root / "feast" / "registry.db"
    try:
        from platform_assets.resources import FeatureStore

        # The resource, as the assets use it: the local feature_store.yaml reads PLATFORM_HOME, which a shell
        # need not have exported (the state root then is the default one).
        store = FeatureStore(repo_path=str(settings.feature_repo_dir()), state_root=str(root),
                             yaml_file=str(settings.feature_store_yaml())).store()
        views = []
        for service_name in (s for s in (FEATURE_SERVICE, ONLINE_FEATURE_SERVICE) if s):
            service = store.get_feature_service(service_name)
            for projection in service.feature_view_projections:
                view = store.get_feature_view(projection.name)
                views.append({"feature_service": service_name, "view": view.name,
                              "features": [f.name for f in projection.features],
                              "dbt_model": view.tags.get("dbt_model"),
                              "source": getattr(view.batch_source, "path", None),
                              **({"derived_from": view.tags["derived_from"]} if "derived_from" in view.tags else {})})
        out["feature_views"] = views
    except Exception as exc:  # noqa: BLE001 - no registry yet, or it cannot be read
        out["feature_views"] = f"not available ({type(exc).__name__}: {exc}; registry {registry})"
        return out
    manifest = settings.dbt_project_dir() / "target" / "manifest.json"
    if manifest.exists():
        parents = json.loads(manifest.read_text()).get("parent_map", {})
        models = sorted({v["dbt_model"] for v in views if v.get("dbt_model")})
        out["dbt_models"] = {m: _upstream(parents, m) for m in models}
    else:
        out["dbt_models"] = f"not available (no {manifest}: run dbt parse or any materialization)"
    return out


def _upstream(parent_map: dict, model: str) -> list[str]:
    """Every dbt node ``model`` reads, directly or not (models and sources, by name)."""
    start = next((k for k in parent_map if k.startswith("model.") and k.endswith(f".{model}")), None)
    seen, todo = set(), [start] if start else []
    while todo:
        node = todo.pop()
        for parent in parent_map.get(node, []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return sorted(p.split(".", 2)[-1] for p in seen)


def _row_lineage(paths: settings.StatePaths, source, key: str | None) -> dict:
    """The validated and raw partition and the landing file (with its hash) of the request's own row (``source.key``)."""
    if not _has_warehouse(paths):
        return {"row": f"not available (no {profile_warehouse(paths.root).where})"}
    with _warehouse(paths) as con:
        if not key or source.validated_table not in table_names(con):
            return {}
        row = con.execute(
            f"SELECT a._partition, a._source_file, a._source_row, f.sha256 FROM {source.validated_table} a "
            f"LEFT JOIN {source.landing_files_table} f ON f.path = a._source_file "
            f"WHERE CAST(a.{quoted(source.key)} AS VARCHAR) = ?",
            [str(key)],
        ).fetchone()
    return {"row": {"validated_partition": row[0], "raw_partition": row[0], "landing_file": row[1], "row": row[2],
                    "file_sha256": row[3]}
            if row else f"{source.key} {key!r} has not landed yet (no validated row)"}


def _listed_now(paths: settings.StatePaths, use_case: UseCase) -> dict[tuple[str, str], str]:
    """The sha256 the warehouse lists now for each landing file (role ``rows``) and outcome file (``labels``)."""
    if not _has_warehouse(paths):
        return {}
    with _warehouse(paths) as con:
        tables = table_names(con)
        listings = [(role, table) for role, table in (("rows", use_case.source.landing_files_table),
                                                      ("labels", use_case.monitor_table("outcome_files")))
                    if table in tables]
        return {(role, path): sha for role, table in listings
                for path, sha in con.execute(f"SELECT path, sha256 FROM {table}").fetchall()}


def training_files(client, run_id: str, paths: settings.StatePaths, use_case: UseCase) -> dict | str:
    """The files a model version was trained on, as its training set recorded them when it was built.

    Read from the version's MLflow run (``TRAINING_FILES_ARTIFACT``): the window, and each landing file
    (role ``rows``) and outcome file (role ``labels``) with its partition, the sha256 it had when read and the
    rows it gave. Each is compared with the warehouse's listing now: ``now`` says ``unchanged``, the hash of
    the file that replaced it (a day ingested again), or that it is no longer listed.
    """
    import tempfile

    from platform_assets.features.training_set import TRAINING_FILES_ARTIFACT

    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = json.loads(Path(client.download_artifacts(run_id, TRAINING_FILES_ARTIFACT, tmp)).read_text())
    except Exception as exc:  # noqa: BLE001 - a run from before the files were recorded, or artifacts unreachable
        return (f"not recorded: MLflow run {run_id} has no {TRAINING_FILES_ARTIFACT} "
                f"({type(exc).__name__}: {str(exc)[:200]})")
    now = _listed_now(paths, use_case)
    files = manifest.get("files", [])
    for f in files:
        current = now.get((f["role"], f["path"]))
        f["now"] = ("unchanged" if current == f["sha256"] else "no longer listed" if current is None
                    else f"changed since: sha256 {current}")
    partitions = sorted({f["partition"] for f in files if f["role"] == "rows" and f["partition"]})
    return {
        "recorded_in": f"MLflow run {run_id}, artifact {TRAINING_FILES_ARTIFACT}",
        "since": manifest.get("since"),
        "labels_known_as_of": manifest.get("labels_known_as_of"),
        "rows": manifest.get("rows"),
        "validated_partitions": f"{partitions[0]}...{partitions[-1]} ({len(partitions)} days)" if partitions else "none",
        "landing_files": [f for f in files if f["role"] == "rows"],
        "outcome_files": [f for f in files if f["role"] == "labels"],
    }


def trace_request(paths: settings.StatePaths, request_id: str) -> dict:
    """Answers "where did this prediction come from?" for one request id.

    Returns:
        ``request`` (what was asked and answered, and where it was logged),
        ``features_used`` and ``online_features`` (the values the server used),
        ``model``, ``mlflow_run``, ``training_set``, ``features`` (service, views,
        dbt models), ``row`` (the served row's landing file) and ``training_data``
        (``training_files``: the window and the files with their hashes when it was built).

    Raises:
        PredictionNotFound: If the request id was never logged.
    """
    rows, where, use_case = find_logged_prediction(paths, request_id)
    first = {k: _plain(v) for k, v in rows[0].items()}
    from platform_assets.monitor.logs import log_fields

    fields = log_fields(use_case.id_columns())
    inputs = [k for k in first if k not in fields and not k.startswith("_")]
    module = use_case.request_features_module()
    computed = set(getattr(module, "COMPUTED", ())) if module else set()
    trace: dict = {
        "use_case": use_case.name,
        "request": {**{k: first.get(k) for k in fields if k in first}, "rows": len(rows), "logged_in": where},
        "features_used": [{k: _plain(r.get(k)) for k in inputs} for r in rows],
        # What the server computed per request (from the online store and the row's fields); the rest came with it.
        "request_features": [
            {k: _plain(r.get(k)) for k in inputs if k in computed} if r.get("feature_source") == "online"
            else "none: the request carried every feature" for r in rows
        ],
    }
    trace.update(_model_lineage(first["model_name"], str(first["model_version"]), paths, use_case))
    trace["features"] = _feature_lineage(paths.root, use_case)
    trace.update(_row_lineage(paths, use_case.source, first.get(use_case.source.key)))
    return trace


def trace_model(paths: settings.StatePaths, name: str, version: str) -> dict:
    """What a registered version was trained on: ``model``, ``mlflow_run``, ``training_set``, ``features`` and
    ``training_data``, as ``trace_request`` gives them for a prediction it served.

    Raises:
        LookupError: If no declared use case registers ``name``.
    """
    use_case = next((u for u in use_cases() if u.model_name == name), None)
    if use_case is None:
        raise LookupError(f"no declared use case registers a model called {name!r} "
                          f"(known: {', '.join(u.model_name for u in use_cases())})")
    return {"use_case": use_case.name, **_model_lineage(name, str(version), paths, use_case),
            "features": _feature_lineage(paths.root, use_case)}


def format_trace(trace: dict) -> str:
    """The trace as indented JSON (the CLI's output)."""
    return json.dumps(trace, indent=2, default=str)

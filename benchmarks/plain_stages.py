"""A job's stage functions called from a plain script: the other side of the orchestration-overhead benchmark.

Each asset body and each asset check of the job is called directly (Dagster's direct invocation: the decorated
function with its config, its resources and a context built for the call), in the job's order, in this one
process: no run, no executor, no event log, no run storage. What Dagster adds around the same functions is the
difference between a run of the job and this script (``bench_overhead.py``).

    .venv/bin/python benchmarks/plain_stages.py --job loan_default__features_to_serving [--partition-range A...B]

Prints one JSON object: the wall seconds of each stage (an asset's step and its checks, by step name), of the
imports and definitions, and in all.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

T0 = time.perf_counter()
import dagster as dg  # noqa: E402

from platform_assets.definitions import build_resources, defs, use_case_definitions  # noqa: E402

LOADED_S = time.perf_counter() - T0


def _config(fn) -> dict:
    """The default config object of a function's ``config`` parameter (``{}``: none)."""
    parameter = inspect.signature(fn).parameters.get("config")
    return {"config": parameter.annotation()} if parameter is not None else {}


def _resources(fn, resources: dict) -> dict:
    return {name: resources[name] for name in inspect.signature(fn).parameters if name in resources}


def _body(definition):
    """The function a definition wraps (an asset's, or a check's)."""
    return definition.op.compute_fn.decorated_fn


def _mlflow_run(resource_key: str, resources: dict):
    """What dagster-mlflow's resource gives a step, outside a run: the ``mlflow`` module, its experiment set
    (created under the state root first, as the resource does) and a run started."""
    import mlflow

    from platform_assets.declared import use_cases

    registry = resources["mlflow_registry"]
    name = next(u.model_name for u in use_cases() if resource_key.endswith(u.name))
    registry.ensure_experiment(name)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_experiment(name)
    mlflow.start_run(tags={"plain_script": "true"})
    return mlflow


def _dbt_build(definition, resources: dict) -> None:
    """What the dbt stage runs: ``dbt build`` of its selection, on the warehouse (dagster-dbt's ``cli`` needs a
    run's context to select; here the selection is given as the stage gives it)."""
    import subprocess
    import sys
    from pathlib import Path

    from platform_assets import config

    warehouse, dbt = resources["warehouse"], resources["dbt"]
    env = config.child_environment(DBT_TARGET="local", PLATFORM_DUCKDB_PATH=warehouse.database,
                                   PLATFORM_DUCKDB_MEMORY=config.get("PLATFORM_DUCKDB_MEMORY"),
                                   DBT_INDIRECT_SELECTION=config.get("DBT_INDIRECT_SELECTION"))
    command = [str(Path(sys.executable).parent / "dbt"), "build", "--select", definition.op.tags["dagster_dbt/select"],
               "--project-dir", dbt.project_dir, "--profiles-dir", dbt.profiles_dir]
    if definition.op.tags.get("dagster_dbt/exclude"):
        command += ["--exclude", definition.op.tags["dagster_dbt/exclude"]]
    subprocess.run(command, env=env, check=True, capture_output=True)


def _record(instance, definition, event) -> None:
    """Writes what a call returned where a run would have (as runless events): later stages read them (the
    champion reads the evaluation and the gate's verdict from the instance)."""
    if isinstance(event, dg.AssetCheckResult):
        (key,) = definition.check_keys
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=key.name, passed=event.passed, metadata=event.metadata or {},
            severity=event.severity))
        return
    if isinstance(event, dg.Output):
        key, metadata, version = definition.keys_by_output_name[event.output_name], event.metadata, event.data_version
    elif isinstance(event, dg.MaterializeResult):
        key, metadata, version = event.asset_key or definition.key, event.metadata, event.data_version
    elif isinstance(event, dg.AssetMaterialization):
        key, metadata, version = event.asset_key, event.metadata, None
    else:
        return
    tags = {"dagster/data_version": version.value} if version is not None else None
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata or {}, tags=tags))


def _call(definition, resources: dict, instance, partitions, check: bool):
    """Calls ``definition``'s function with its config's defaults, its resources and a context."""
    if not check and "dagster_dbt/select" in definition.op.tags:
        return _dbt_build(definition, resources)
    needed = {k: v for k, v in resources.items() if k in definition.required_resource_keys}
    mlflow_keys = [k for k in needed if k.startswith("mlflow_") and k != "mlflow_registry"]
    with dg.build_resources({k: v for k, v in needed.items() if k not in mlflow_keys}, instance=instance) as built:
        live = {k: getattr(built, k) for k in needed if k not in mlflow_keys}
        live.update({k: _mlflow_run(k, resources) for k in mlflow_keys})
        fn = _body(definition)
        if check:  # a check is its plain function: resources as arguments
            parameters = inspect.signature(fn).parameters
            args = {**_config(fn), **{k: v for k, v in live.items() if k in parameters}}
            if "context" in parameters:
                args["context"] = dg.build_asset_check_context(instance=instance)
            result = fn(**args)
        else:  # invoked through its definition, which binds the context (resources, partitions, asset) to the call
            context = dg.build_asset_context(resources=live, instance=instance, partition_key_range=partitions)
            result = definition(context=context, **_config(fn))
        for event in (list(result) if inspect.isgenerator(result) else [result]):
            _record(instance, definition, event)


def run_plain(job_name: str, partition_range: str | None) -> dict:
    """Calls the job's assets and checks in order; returns seconds by stage (a step's name)."""
    from dagster._core.definitions.partitions.partition_key_range import PartitionKeyRange

    repository = defs.get_repository_def()
    job = repository.get_job(job_name)
    instance = dg.DagsterInstance.get()
    resources = build_resources()  # the code location's own, as configured objects
    selected = job.asset_layer.selected_asset_keys
    order = [key for key in repository.asset_graph.toposorted_asset_keys if key in selected]
    partitions = PartitionKeyRange(*partition_range.split("...")) if partition_range else None
    # The definitions as declared, before the code location binds its resources to them (a directly invoked
    # asset takes its resources from the context built here).
    declared = use_case_definitions()
    unbound = {key: a for a in declared.assets for key in a.keys}
    done, seconds = set(), {}
    for key in order:
        assets_def = unbound[key]
        if id(assets_def) in done:
            continue
        done.add(id(assets_def))
        start = time.perf_counter()
        _call(assets_def, resources, instance, partitions, check=False)
        seconds[assets_def.op.name] = round(time.perf_counter() - start, 2)
        for checks_def in [c for c in declared.asset_checks or [] if any(k.asset_key in assets_def.keys
                                                                      for k in c.check_keys)]:
            start = time.perf_counter()
            _call(checks_def, resources, instance, partitions, check=True)
            seconds[checks_def.op.name] = round(time.perf_counter() - start, 2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True)
    parser.add_argument("--partition-range")
    args = parser.parse_args()
    seconds = run_plain(args.job, args.partition_range)
    print(json.dumps({"job": args.job, "load_s": round(LOADED_S, 2), "stages": seconds,
                      "total_s": round(time.perf_counter() - T0, 2)}))


if __name__ == "__main__":
    main()

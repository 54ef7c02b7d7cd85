"""Runs a job or an asset selection in this process, attributed to the code location the UI loads.

``dagster job execute -m ...`` and ``dagster asset materialize -m ...`` (and ``dg launch``, which
calls them) execute in process but record their runs with no code-location origin: no
``remote_job_origin`` and so no ``.dagster/repository`` tag. The UI lists a job's runs by that tag
(``__repository__@platform_assets``), so after ``make materialize`` the job pages said "No runs
found". Neither command takes a workspace or a location in dagster 1.13, and ``dagster job launch``
(which does) only queues the run for the daemon.

This does what those commands do (the same module, executed in this process, the same
``--partition`` / ``--partition-range`` tags) and creates the run with the origin that
workspace.yaml gives its location, the very origin the UI and the daemon load::

    python -m platform_assets.launch --job features_to_serving
    python -m platform_assets.launch --assets customer_churn/raw/subscriptions,customer_churn/validated/subscriptions --partition-range A...B
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from .settings import PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"


def workspace_location(workspace: Path | str = WORKSPACE, location_name: str | None = None):
    """The code-location origin that ``workspace`` gives ``location_name`` (or its only location)."""
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    origins = location_origins_from_yaml_paths([str(workspace)])
    if location_name is None:
        if len(origins) != 1:
            raise ValueError(f"{workspace} has {len(origins)} code locations: name one with --location")
        return origins[0]
    for origin in origins:
        if origin.location_name == location_name:
            return origin
    raise ValueError(f"no code location {location_name!r} in {workspace}: {[o.location_name for o in origins]}")


def _refuse_multi_run_ranges(repo_def, job_def, asset_keys, partition_range: str) -> None:
    """Refuses a range for assets that take one partition per run (Dagster would fail the run midway with an
    invariant violation): says which, and how to run the days instead."""
    import dagster as dg

    selected = asset_keys or job_def.asset_layer.selected_asset_keys
    graph = repo_def.asset_graph
    single = dg.BackfillPolicy.single_run()
    one_per_run = sorted(k.to_user_string() for k in selected
                         if graph.get(k).partitions_def is not None and graph.get(k).backfill_policy != single)
    if one_per_run:
        first, _, last = partition_range.partition("...")
        raise ValueError(
            f"{job_def.name}: {', '.join(one_per_run)} materialize one partition per run, so a range cannot run as "
            f"one: run each day with --partition (for d in ...; do python -m platform_assets.launch --job "
            f"{job_def.name} --partition $d; done), or launch a backfill of {first}..{last} in the UI")


def launch(
    instance,
    *,
    job: str | None = None,
    assets: str | None = None,
    partition: str | None = None,
    partition_range: str | None = None,
    tags: Mapping[str, str] | None = None,
    workspace: Path | str = WORKSPACE,
    location: str | None = None,
):
    """Executes ``job`` or the comma-separated asset selection ``assets`` in this process; returns the result.

    The run carries the workspace location's origin (``run.remote_job_origin.location_name``) and
    the ``.dagster/repository`` tag, as a run launched from the UI does.
    """
    import dagster as dg
    from dagster._cli.workspace.cli_target import get_repository_python_origin_from_cli_opts
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.execution.api import execute_run
    from dagster._core.origin import JobPythonOrigin
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from dagster._utils.hosted_user_process import recon_job_from_origin, recon_repository_from_origin
    from dagster_shared.cli import PythonPointerOpts

    if (job is None) == (assets is None):
        raise ValueError("give exactly one of job and assets")
    if partition and partition_range:
        raise ValueError("give at most one of partition and partition_range")

    origin = workspace_location(workspace, location)
    target = origin.loadable_target_origin
    repository_origin = get_repository_python_origin_from_cli_opts(
        PythonPointerOpts(
            python_file=target.python_file,
            module_name=target.module_name,
            package_name=target.package_name,
            autoload_defs_module_name=target.autoload_defs_module_name,
            working_directory=target.working_directory,
            attribute=target.attribute,
        )
    )
    repo_def = recon_repository_from_origin(repository_origin).get_definition()

    asset_keys = None
    if assets is not None:
        asset_keys = dg.AssetSelection.from_coercible(assets.split(",")).resolve(repo_def.asset_graph)
        job_def = repo_def.get_implicit_job_def_for_assets(asset_keys)
        if job_def is None:
            raise ValueError("the selected assets must share one PartitionsDefinition (or have none)")
    else:
        job_def = repo_def.get_job(job)

    run_tags = dict(tags or {})
    if partition:
        with partition_loading_context(dynamic_partitions_store=instance) as context:
            job_def.validate_partition_key(partition, selected_asset_keys=asset_keys, context=context)
            run_tags.update(job_def.get_tags_for_partition_key(partition, selected_asset_keys=asset_keys))
    elif partition_range:
        first, sep, last = partition_range.partition("...")
        if not sep or not first or not last:
            raise ValueError(f"partition range {partition_range!r}: expected FIRST...LAST")
        with partition_loading_context(dynamic_partitions_store=instance) as context:
            for key in (first, last):
                job_def.validate_partition_key(key, selected_asset_keys=asset_keys, context=context)
        _refuse_multi_run_ranges(repo_def, job_def, asset_keys, partition_range)
        run_tags.update({ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})

    recon_job = recon_job_from_origin(JobPythonOrigin(job_def.name, repository_origin=repository_origin))
    recon_job = recon_job.with_repository_load_data(repo_def.repository_load_data)
    full_job_def = recon_job.get_definition()
    run = instance.create_run_for_job(
        job_def=full_job_def,
        tags={**full_job_def.run_tags, **run_tags},
        asset_selection=frozenset(asset_keys) if asset_keys else None,
        remote_job_origin=RemoteRepositoryOrigin(origin, repo_def.name).get_job_origin(job_def.name),
        job_code_origin=recon_job.get_python_origin(),
        repository_load_data=repo_def.repository_load_data,
    )
    return execute_run(recon_job, run, instance, raise_on_error=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.launch", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--job", help="a job of the code location")
    what.add_argument("--assets", help="a comma-separated asset selection, e.g. customer_churn/raw/subscriptions,customer_churn/validated/subscriptions")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--partition", help="one partition key")
    when.add_argument("--partition-range", help="FIRST...LAST, in one run (assets with a single-run backfill policy)")
    parser.add_argument("--workspace", default=str(WORKSPACE), help="the workspace file the UI loads (default: %(default)s)")
    parser.add_argument("--location", help="its code location (default: its only one)")
    args = parser.parse_args(argv)

    import dagster as dg

    from platform_assets.settings import prepare_dagster_home

    prepare_dagster_home()  # the instance `make` sets up, also for a command typed by hand
    with dg.DagsterInstance.get() as instance:
        try:
            result = launch(instance, job=args.job, assets=args.assets, partition=args.partition,
                            partition_range=args.partition_range, workspace=args.workspace, location=args.location)
        except ValueError as refused:  # a request that cannot run as asked: said, no traceback
            print(f"error: {refused}", file=sys.stderr)
            return 2
        run = instance.get_run_by_id(result.run_id)
        print(f"run {result.run_id} ({run.job_name}, location {run.remote_job_origin.location_name}): "
              f"{run.status.value}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

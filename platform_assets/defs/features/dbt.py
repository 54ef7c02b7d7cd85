"""The dbt project as Dagster assets: one asset per model, dbt tests as asset checks."""


import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import dagster as dg

from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from platform_assets import config
from platform_assets.concurrency import DBT_LOCK_RETRY, WAREHOUSE_POOL
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case
from platform_assets.resources import Warehouse
from platform_assets.settings import dbt_project_dir
from platform_assets.cost import with_cost


def _put_environment_bin_on_path() -> None:
    """Lets dagster-dbt find this environment's ``dbt`` when the venv is not activated.

    dagster-dbt's manifest preparer runs ``dbt`` from PATH (it takes no
    executable), so ``.venv/bin/dagster dev`` without an activated venv would fail.
    """
    bin_dir = str(Path(sys.executable).parent)
    if shutil.which("dbt") is None and (Path(bin_dir) / "dbt").exists():
        config.export("PATH", os.pathsep.join([bin_dir, config.system_path("PATH")]))


def _manifest_is_stale(project_dir: Path, manifest: Path) -> bool:
    """Whether the manifest is missing or older than a file of the dbt project it describes."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project_dir / "dbt_project.yml", *(project_dir / d for d in ("models", "tests", "macros"))]
    files = (f for s in sources if s.exists() for f in ([s] if s.is_file() else s.rglob("*")) if f.is_file())
    return any(f.stat().st_mtime > built for f in files)


def dbt_project() -> DbtProject:
    """The dbt project (:func:`~platform_assets.settings.dbt_project_dir`), its manifest prepared when needed."""
    return _dbt_project(dbt_project_dir())


@functools.cache
def _dbt_project(project_dir: Path) -> DbtProject:
    """The dbt project in ``project_dir``, its manifest prepared on first use, after an edit and under ``dagster dev``."""
    _put_environment_bin_on_path()
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    if _manifest_is_stale(project_dir, project.manifest_path):
        # A fresh clone has no manifest yet, and an edited model or test makes it stale
        # (its checks would be missing); `dbt parse` writes one (a few seconds).
        project.preparer.prepare(project)
    project.prepare_if_dev()
    return project


class FeatureDbtTranslator(DagsterDbtTranslator):
    """Puts a use case's dbt models under ``<use case>/features/<model>`` in the use case's group.

    Its dbt source (the validated table) gets the key of the Python asset that
    writes that table (``<use case>/validated/<source>``), so lineage connects.
    """

    def __init__(self, use_case: UseCase):
        super().__init__()
        self.use_case = use_case
        self.keys = for_use_case(use_case)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:  # noqa: D102
        if dbt_resource_props["resource_type"] == "source":
            if dbt_resource_props["name"] == self.use_case.source.name:
                return self.keys.validated
            return super().get_asset_key(dbt_resource_props)
        return self.keys.feature(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:  # noqa: D102
        return self.use_case.name


def build_dbt_assets(use_case: UseCase) -> dg.AssetsDefinition:
    """The use case's dbt models (``dbt/models/<use case>/``) as assets, their tests as asset checks."""
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select=use_case.dbt_select,
        dagster_dbt_translator=FeatureDbtTranslator(use_case),
        name=f"{use_case.name}__dbt",
        pool=WAREHOUSE_POOL,
        retry_policy=DBT_LOCK_RETRY,
    )
    @with_cost
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        """Builds the use case's staging and mart models on DuckDB and runs their tests."""
        # profiles.yml reads the warehouse from the environment of the dbt subprocess: its target `local` (a DuckDB
        # file) or `lake` (the prod DuckLake).
        if warehouse.is_lake:
            from platform_assets.warehouse import extension_dir

            config.export("DBT_TARGET", "lake")
            config.export("PLATFORM_WAREHOUSE_URL", warehouse.catalog)
            config.export("PLATFORM_LAKE_DATA_PATH", warehouse.data_path.rstrip("/") + "/")
            config.export("PLATFORM_DUCKDB_EXTENSION_DIR", extension_dir())
        else:
            config.export("DBT_TARGET", "local")
            config.export("PLATFORM_DUCKDB_PATH", warehouse.database)
            config.export("PLATFORM_DUCKDB_MEMORY", config.get("PLATFORM_DUCKDB_MEMORY"))
        # A subset run (automation may build the staging model alone, first) must not run a test that also
        # reads a model neither selected nor upstream: on a fresh warehouse that model does not exist yet.
        # dbt's default (eager) takes a test if any parent is selected; buildable waits for all of them.
        # dagster-dbt still overrides this with "empty" when it selects tests one by one.
        config.export("DBT_INDIRECT_SELECTION", config.get("DBT_INDIRECT_SELECTION"))
        yield from dbt.cli(["build"], context=context).stream()

    return dbt_models


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource for the project."""
    project = dbt_project()
    return DbtCliResource(project_dir=project, profiles_dir=str(project.project_dir))

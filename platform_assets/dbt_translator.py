"""dagster-dbt's side of the dbt models: the translator, the specs it derives, the CLI resource it runs.

Importing this module imports dbt-core (about 1.5 s), so loading the code
location does not: :mod:`platform_assets.defs.features.dbt` builds the assets
from a cache of :func:`dbt_specs` and comes here only when the manifest changed,
must be prepared, or a run builds the models.
"""

import functools
import os
import shutil
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from platform_assets import config
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case


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


def _put_environment_bin_on_path() -> None:
    """Lets dagster-dbt find this environment's ``dbt`` when the venv is not activated.

    dagster-dbt runs ``dbt`` from PATH (its manifest preparer takes no
    executable), so ``.venv/bin/dagster dev`` without an activated venv would fail.
    """
    bin_dir = str(Path(sys.executable).parent)
    if shutil.which("dbt") is None and (Path(bin_dir) / "dbt").exists():
        config.export("PATH", os.pathsep.join([bin_dir, config.system_path("PATH")]))


def dbt_project(project_dir: Path) -> DbtProject:
    """dagster-dbt's handle on the dbt project in ``project_dir`` (its ``profiles.yml`` inside)."""
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir)


def prepare(project_dir: Path, stale: bool) -> None:
    """Writes the manifest with ``dbt parse`` when ``stale``, and under ``dagster dev`` (dagster-dbt's preparer)."""
    _put_environment_bin_on_path()
    project = dbt_project(project_dir)
    if stale:
        project.preparer.prepare(project)
    project.prepare_if_dev()


def dbt_specs(use_case: UseCase, project_dir: Path) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec], dict]:
    """What dagster-dbt's ``@dbt_assets`` makes of the use case's models and tests: the asset specs, the check
    specs and the op's tags (the dbt selection it runs)."""
    project = dbt_project(project_dir)

    @dbt_assets(manifest=project.manifest_path, project=project, select=use_case.dbt_select,
                dagster_dbt_translator=FeatureDbtTranslator(use_case))
    def _models(context: dg.AssetExecutionContext):
        """Never run: the decorator is called for the specs it derives; the assets that run are
        :func:`platform_assets.defs.features.dbt.build_dbt_assets`'s, built from them."""
        return None

    return list(_models.specs), list(_models.check_specs), dict(_models.op.tags)


def is_dagster_dbt_object(value: Any) -> bool:
    """Whether ``value`` is one of dagster-dbt's (manifest, translator, project) rather than plain metadata."""
    return type(value).__module__.startswith("dagster_dbt.") or isinstance(value, DagsterDbtTranslator)


class _EnvironmentDbtCli(DbtCliResource):
    """dagster-dbt's CLI resource, told the version of this environment's dbt rather than asking it.

    dagster-dbt runs ``dbt --version`` (a new Python process importing dbt, which also looks up the newest
    release online: 3-6 s) before every invocation. When the ``dbt`` it runs is this environment's, its version
    is the dbt-core this process has imported; any other ``dbt`` is still asked.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        found = shutil.which(self.dbt_executable)
        # The environment's bin folder, symlinks not followed (a venv's python links outside it).
        if found and Path(os.path.abspath(found)).parent == Path(os.path.abspath(sys.executable)).parent:
            from dbt.version import __version__

            return version.parse(__version__)
        return super()._cli_version


@functools.cache
def dbt_cli(project_dir: str, profiles_dir: str) -> DbtCliResource:
    """dagster-dbt's CLI resource on the project, ``dbt`` found in this environment (one per process)."""
    _put_environment_bin_on_path()
    return _EnvironmentDbtCli(project_dir=project_dir, profiles_dir=profiles_dir)

"""A use case declared as docs/adding-a-dataset.md tells a user to: the tests' sandbox for one.

The user's dbt project and Feast repository are copies of the platform's with
the use case's own files added, named by ``PLATFORM_DBT_PROJECT_DIR`` and
``PLATFORM_FEATURE_REPO``; the declaration is loaded by Dagster's own component
loader (a defs-folder sandbox); the runs go to a temporary Dagster instance.
"""

from __future__ import annotations

import contextlib
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest
import yaml

from platform_assets import definitions, settings
from platform_assets.components import UseCaseComponent
from platform_assets.declarations import UseCase
from tests.conftest import PROJECT_ROOT


@dataclass
class SandboxedUseCase:
    """A declared use case's definitions on its own state root, and the instance its runs go to."""

    root: Path
    use_case: UseCase
    defs: dg.Definitions
    instance: dg.DagsterInstance

    @property
    def paths(self) -> settings.UseCasePaths:
        return settings.paths(self.root).of(self.use_case.name)

    def run(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        """Runs the use case's job ``<use case>__<job>`` in process (its result, never raised)."""
        return self.defs.resolve_job_def(f"{self.use_case.name}__{job}").execute_in_process(
            instance=self.instance, raise_on_error=False, **kwargs)


@contextlib.contextmanager
def sandboxed_use_case(tmp: Path, root: Path, code: Path, declaration: str, dbt_models: dict[str, dict[str, str]],
                       feast_files: dict[str, str]) -> Iterator[SandboxedUseCase]:
    """The use case ``declaration`` (a ``defs.yaml``) declares, ready to run under the state root ``root``.

    Args:
        tmp: Where the user's copies of the dbt project and the Feast repository go.
        root: The state root (landing files may already be there).
        code: The user's own modules (the schema): put on ``sys.path``.
        declaration: The text of the use case's ``defs.yaml``.
        dbt_models: Folder under ``models/`` -> file name -> text (dedented) of the user's dbt files.
        feast_files: File name -> text of the user's Feast definitions.
    """
    from dagster.components.testing import create_defs_folder_sandbox

    from platform_assets.deploy.processes import free_port
    from platform_assets.resources import LocalDeployer

    dbt_dir, feature_repo = tmp / "dbt", tmp / "feature_repo"
    shutil.copytree(PROJECT_ROOT / "dbt", dbt_dir, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    for folder, files in dbt_models.items():
        (dbt_dir / "models" / folder).mkdir()
        for name, text in files.items():
            (dbt_dir / "models" / folder / name).write_text(textwrap.dedent(text))
    shutil.copytree(PROJECT_ROOT / "feature_repo", feature_repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    for name, text in feast_files.items():
        (feature_repo / name).write_text(text)

    with pytest.MonkeyPatch.context() as mp, create_defs_folder_sandbox() as sandbox:
        mp.syspath_prepend(str(code))
        mp.setenv("PLATFORM_HOME", str(root))
        mp.setenv(settings.DBT_PROJECT_ENV, str(dbt_dir))
        mp.setenv(settings.FEATURE_REPO_ENV, str(feature_repo))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / "dagster_home").mkdir(parents=True)
        name = yaml.safe_load(declaration)["attributes"]["name"]
        defs_path = sandbox.scaffold_component(component_cls=UseCaseComponent, defs_path=name)
        (defs_path / "defs.yaml").write_text(declaration)
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, declared):
            use_case = component.use_case()
            # A free stable port: a demo's endpoints may serve on the default ports meanwhile.
            resources = {**definitions.embedded_resources(root, declared=[use_case]),
                         "deployer": LocalDeployer(http_port=free_port())}
            defs = definitions.build_definitions(resources, declared)
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            yield SandboxedUseCase(root, use_case, defs, instance)

"""The dbt assets load without dbt-core, and are the assets dagster-dbt's ``@dbt_assets`` makes."""

import os
import shutil
import subprocess
import sys

import pytest

from platform_assets import settings
from platform_assets.declared import use_cases
from tests.conftest import PROJECT_ROOT

LOADED_DBT = (
    "import sys, platform_assets.definitions; "
    "print(','.join(m for m in sys.modules if m == 'dbt' or m.startswith(('dbt.', 'dagster_dbt'))))"
)


def test_loading_the_code_location_imports_no_dbt_module():
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}  # `dagster dev` prepares the manifest
    for _ in range(2):  # the first load may derive the specs (a new manifest); the second reads them
        out = subprocess.run([sys.executable, "-c", LOADED_DBT], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture
def dbt_copy(tmp_path, monkeypatch):
    """The dbt project copied with its manifest (not the specs derived from it), the code location pointed at it."""
    project = tmp_path / "dbt"
    shutil.copytree(settings.dbt_project_dir(), project, ignore=shutil.ignore_patterns("dagster_specs", "logs"))
    monkeypatch.setenv(settings.DBT_PROJECT_ENV, str(project))
    return project


def _dagster_dbt_assets(use_case):
    """The use case's dbt assets as ``@dbt_assets`` makes them, with the same arguments."""
    from dagster_dbt import dbt_assets

    from platform_assets.concurrency import DBT_LOCK_RETRY, WAREHOUSE_POOL
    from platform_assets.dbt_translator import FeatureDbtTranslator, dbt_project

    project = dbt_project(settings.dbt_project_dir())

    @dbt_assets(manifest=project.manifest_path, project=project, select=use_case.dbt_select,
                dagster_dbt_translator=FeatureDbtTranslator(use_case), name=f"{use_case.name}__dbt",
                pool=WAREHOUSE_POOL, retry_policy=DBT_LOCK_RETRY)
    def models(context):
        raise NotImplementedError

    return models


def _assert_same_assets(ours, theirs):
    from platform_assets.dbt_translator import is_dagster_dbt_object
    from platform_assets.defs.features.dbt import DagsterDbtObject

    assert ours.keys == theirs.keys and ours.check_keys == theirs.check_keys
    assert (ours.op.name, ours.op.tags, ours.op.pool, ours.op.retry_policy, ours.can_subset) == \
           (theirs.op.name, theirs.op.tags, theirs.op.pool, theirs.op.retry_policy, theirs.can_subset)
    assert {c.key: c for c in ours.check_specs} == {c.key: c for c in theirs.check_specs}
    for key, spec in theirs.specs_by_key.items():
        mine = ours.specs_by_key[key]
        deferred = {k for k, v in mine.metadata.items() if isinstance(v, DagsterDbtObject)}
        assert deferred == {k for k, v in spec.metadata.items() if is_dagster_dbt_object(v)} != set()
        plain = {k: v for k, v in spec.metadata.items() if k not in deferred}
        assert {f: getattr(mine, f) for f in spec._fields if f != "metadata"} == \
               {f: getattr(spec, f) for f in spec._fields if f != "metadata"}, key
        assert {k: v for k, v in mine.metadata.items() if k not in deferred} == plain, key
        # What a run reads back: the manifest, the translator's keys, the project.
        made = {k: mine.metadata[k].made() for k in deferred}
        manifest = spec.metadata["dagster_dbt/manifest"].manifest
        assert made["dagster_dbt/manifest"].manifest == manifest
        node = manifest["nodes"][spec.metadata["dagster_dbt/unique_id"]]
        assert made["dagster_dbt/dagster_dbt_translator"].get_asset_key(node) == key
        assert made["dagster_dbt/project"].project_dir == spec.metadata["dagster_dbt/project"].project_dir


def test_dbt_assets_are_those_dagster_dbt_makes_derived_or_cached(dbt_copy):
    from platform_assets.defs.features.dbt import build_dbt_assets

    cache = dbt_copy / "target" / "dagster_specs"
    for use_case in use_cases():
        theirs = _dagster_dbt_assets(use_case)
        _assert_same_assets(build_dbt_assets(use_case), theirs)  # derived by dagster-dbt, then cached
        assert (cache / f"{use_case.name}.pickle").exists()
        _assert_same_assets(build_dbt_assets(use_case), theirs)  # from the cache


def test_a_torn_or_outdated_cache_is_derived_again(dbt_copy):
    from platform_assets.defs.features.dbt import build_dbt_assets

    use_case = use_cases()[0]
    cached = dbt_copy / "target" / "dagster_specs" / f"{use_case.name}.pickle"
    build_dbt_assets(use_case)
    cached.write_bytes(cached.read_bytes()[:100])
    _assert_same_assets(build_dbt_assets(use_case), _dagster_dbt_assets(use_case))
    # A changed manifest (an edit parsed since): the specs derived from the old one are not used.
    before = cached.read_bytes()
    manifest = dbt_copy / "target" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"description": ""', '"description": "edited"'))
    _assert_same_assets(build_dbt_assets(use_case), _dagster_dbt_assets(use_case))
    assert cached.read_bytes() != before


def test_this_environment_s_dbt_is_not_asked_its_version_and_another_dbt_is(tmp_path, monkeypatch):
    """dagster-dbt runs `dbt --version` (seconds) before each invocation; this environment's dbt is the dbt-core
    imported here, so it is not asked. A dbt elsewhere is."""
    import dagster_dbt.core.resource
    from dbt.version import __version__

    from platform_assets.dbt_translator import _EnvironmentDbtCli

    asked = []
    real = dagster_dbt.core.resource.check_output
    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", lambda args: asked.append(args) or real(args))
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), os.path.dirname(sys.executable), os.environ["PATH"]]))
    ours = _EnvironmentDbtCli(project_dir=str(PROJECT_ROOT / "dbt"), profiles_dir=str(PROJECT_ROOT / "dbt"),
                              dbt_executable=os.path.join(os.path.dirname(sys.executable), "dbt"))
    assert str(ours._cli_version) == __version__ and asked == []
    other = tmp_path / "dbt"
    other.write_text("#!/bin/sh\necho 'Core:\n  - installed: 9.8.7'\n")
    other.chmod(0o755)
    theirs = _EnvironmentDbtCli(project_dir=str(PROJECT_ROOT / "dbt"), profiles_dir=str(PROJECT_ROOT / "dbt"),
                                dbt_executable="dbt")  # found first on PATH: the one in tmp_path
    assert str(theirs._cli_version) == "9.8.7" and asked == [["dbt", "--version"]]

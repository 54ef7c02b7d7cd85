"""The dbt project as Dagster assets: one asset per model, dbt tests as asset checks.

dagster-dbt makes the assets' specs of the manifest, but importing it imports
dbt-core (about 1.5 s of every load of the code location). So the specs that
:func:`platform_assets.dbt_translator.dbt_specs` derives are kept next to the
manifest (``dbt/target/dagster_specs/<use case>.pickle``), valid while the
manifest, dagster, dagster-dbt and the translator's code are those they came
from; the code location builds the assets from them, and dbt-core is imported
when they are derived again or when a run builds the models.
"""

import functools
import hashlib
import importlib.util
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._utils.env import using_dagster_dev

from platform_assets import config
from platform_assets.concurrency import DBT_LOCK_RETRY, WAREHOUSE_POOL
from platform_assets.cost import with_cost
from platform_assets.declarations import UseCase
from platform_assets.resources import Warehouse
from platform_assets.settings import dbt_project_dir

# Derived specs older than these sources (or another layout of the cache file) are derived again.
_SPEC_SOURCES = ("platform_assets.dbt_translator", "platform_assets.keys", __name__)
_CACHE_LAYOUT = "1"


def _manifest_is_stale(project_dir: Path, manifest: Path) -> bool:
    """Whether the manifest is missing or older than a file of the dbt project it describes."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project_dir / "dbt_project.yml", *(project_dir / d for d in ("models", "tests", "macros"))]
    files = (f for s in sources if s.exists() for f in ([s] if s.is_file() else s.rglob("*")) if f.is_file())
    return any(f.stat().st_mtime > built for f in files)


@functools.cache
def prepared_manifest(project_dir: Path) -> Path:
    """The manifest of the dbt project in ``project_dir``, written on first use, after an edit and under
    ``dagster dev``."""
    manifest = project_dir / "target" / "manifest.json"  # dagster-dbt's DbtProject(project_dir).manifest_path
    stale = _manifest_is_stale(project_dir, manifest)
    if stale or using_dagster_dev():
        # A fresh clone has no manifest yet, and an edited model or test makes it stale
        # (its checks would be missing); `dbt parse` writes one (a few seconds).
        from platform_assets.dbt_translator import prepare

        prepare(project_dir, stale)
    return manifest


class DagsterDbtObject:
    """Stands for one of dagster-dbt's objects (the manifest, the translator, the project) in a dbt asset's metadata.

    dagster-dbt reads them back from there when it runs the models; :meth:`DbtCli.cli` puts the real ones, made
    by dagster-dbt itself, in their place first.
    """

    def __init__(self, use_case: UseCase, project_dir: Path, asset_key: dg.AssetKey, metadata_key: str):
        self.use_case, self.project_dir, self.asset_key, self.metadata_key = use_case, project_dir, asset_key, metadata_key

    def made(self) -> Any:
        """The object dagster-dbt puts here, made on the manifest (imports dbt-core)."""
        return _run_time_metadata(self.use_case, self.project_dir)[self.asset_key][self.metadata_key]


def _make_dagster_dbt_objects(assets_def: dg.AssetsDefinition) -> None:
    """Puts dagster-dbt's own objects in the metadata of ``assets_def`` in place of those standing for them."""
    for spec in assets_def.specs:
        for name, value in spec.metadata.items():
            if isinstance(value, DagsterDbtObject):
                spec.metadata[name] = value.made()


_run_time: dict[tuple[str, Path], dict] = {}


def _run_time_metadata(use_case: UseCase, project_dir: Path) -> dict:
    """The metadata dagster-dbt gives each of the use case's dbt assets, made once per process."""
    if (use_case.name, project_dir) not in _run_time:
        from platform_assets.dbt_translator import dbt_specs

        specs, _, _ = dbt_specs(use_case, project_dir)
        _run_time[use_case.name, project_dir] = {spec.key: spec.metadata for spec in specs}
    return _run_time[use_case.name, project_dir]


def _file_bytes(module: str) -> bytes:
    return Path(importlib.util.find_spec(module).origin).read_bytes()


def _cache_key(use_case: UseCase, project_dir: Path, manifest: Path) -> str:
    """What the derived specs depend on: the manifest, the libraries, the translator's code and the use case."""
    digest = hashlib.sha256(manifest.read_bytes())
    dagster_dbt_version = Path(importlib.util.find_spec("dagster_dbt").origin).with_name("version.py")
    for part in (dagster_dbt_version.read_bytes(), dg.__version__.encode(), _CACHE_LAYOUT.encode(),
                 *map(_file_bytes, _SPEC_SOURCES), repr(use_case).encode(), str(project_dir).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _new_dep(asset_key: dg.AssetKey, partition_mapping, metadata) -> dg.AssetDep:
    return dg.AssetDep(asset_key, partition_mapping=partition_mapping, metadata=metadata)


class _SpecPickler(pickle.Pickler):
    """Pickles specs; an ``AssetDep`` (a named tuple whose constructor takes other arguments) by its fields."""

    def reducer_override(self, obj):
        if type(obj) is dg.AssetDep:
            return _new_dep, (obj.asset_key, obj.partition_mapping, obj.metadata)
        return NotImplemented


def _derived_specs(use_case: UseCase, project_dir: Path, manifest: Path) -> dict:
    """dagster-dbt's specs of the use case's models, its objects left out of their metadata (their keys kept in
    ``run_time_keys``): from the cache when it is valid, else derived (importing dbt-core) and cached."""
    key = _cache_key(use_case, project_dir, manifest)
    path = manifest.parent / "dagster_specs" / f"{use_case.name}.pickle"
    try:
        cached = pickle.loads(path.read_bytes())
        if cached["key"] == key:
            return cached
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, KeyError, TypeError):
        pass  # missing, from another layout or torn: derived again

    from platform_assets.dbt_translator import dbt_specs, is_dagster_dbt_object

    specs, check_specs, op_tags = dbt_specs(use_case, project_dir)
    derived = {
        "key": key, "check_specs": check_specs, "op_tags": op_tags,
        "run_time_keys": [[k for k, v in s.metadata.items() if is_dagster_dbt_object(v)] for s in specs],
        "specs": [s.replace_attributes(metadata={k: v for k, v in s.metadata.items() if not is_dagster_dbt_object(v)})
                  for s in specs],
    }
    buffer = io.BytesIO()
    _SpecPickler(buffer).dump(derived)
    try:
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_bytes(buffer.getvalue())
        partial.replace(path)  # atomic: a concurrent load reads the old file or this one
    except OSError:
        pass  # a read-only project (an image): derived on each load
    return derived


def _specs(use_case: UseCase, project_dir: Path) -> tuple[Sequence[dg.AssetSpec], Sequence[dg.AssetCheckSpec], dict]:
    """The specs ``@dbt_assets`` makes, dagster-dbt's objects in their metadata stood for until a run makes them."""
    derived = _derived_specs(use_case, project_dir, prepared_manifest(project_dir))
    specs = [
        spec.merge_attributes(metadata={k: DagsterDbtObject(use_case, project_dir, spec.key, k) for k in keys})
        for spec, keys in zip(derived["specs"], derived["run_time_keys"])
    ]
    return specs, derived["check_specs"], derived["op_tags"]


class DbtCli(dg.ConfigurableResource):
    """Runs dbt on the project through dagster-dbt's ``DbtCliResource``, imported when a run uses it."""

    project_dir: str
    profiles_dir: str

    def cli(self, args: list[str], *, context: dg.AssetExecutionContext):
        """``DbtCliResource.cli``: a dbt invocation whose ``stream()`` yields the selected models' events."""
        from platform_assets.dbt_translator import dbt_cli

        _make_dagster_dbt_objects(context.assets_def)
        return dbt_cli(self.project_dir, self.profiles_dir).cli(args, context=context)


def has_dbt_models(use_case: UseCase) -> bool:
    """Whether the dbt project has the use case's folder of models (``models/<use case>/``).

    Raises:
        DeclarationError: When the use case declares dbt marts but the folder is missing.
    """
    from platform_assets.declarations import DeclarationError

    folder = dbt_project_dir() / "models" / use_case.name
    if folder.is_dir():
        return True
    if use_case.marts:
        raise DeclarationError(f"use case {use_case.name}: marts {list(use_case.marts)} are declared but the dbt "
                               f"project has no folder {folder}: write the models there, or leave marts out to "
                               "derive the features from the source's own columns")
    return False


def build_dbt_assets(use_case: UseCase) -> dg.AssetsDefinition:
    """The use case's dbt models (``dbt/models/<use case>/``) as assets, their tests as asset checks."""
    specs, check_specs, op_tags = _specs(use_case, dbt_project_dir())

    # What dagster-dbt's @dbt_assets makes of the specs; op_tags hold the dbt selection it runs.
    @dg.multi_asset(
        name=f"{use_case.name}__dbt",
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        op_tags=op_tags,
        pool=WAREHOUSE_POOL,
        retry_policy=DBT_LOCK_RETRY,
        allow_arbitrary_check_specs=True,
    )
    @with_cost
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCli, warehouse: Warehouse):
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


def dbt_resource() -> DbtCli:
    """The dbt CLI resource for the project."""
    project_dir = dbt_project_dir()
    prepared_manifest(project_dir)
    return DbtCli(project_dir=str(project_dir), profiles_dir=str(project_dir))

"""The code location: every stage's assets, checks and resources in one Definitions."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from platform_assets import config, settings
from platform_assets.automation import automation_sensor
from platform_assets.declarations import UseCase
from platform_assets.declared import use_cases
from platform_assets.defs.features import dbt as feature_dbt
from platform_assets.resources import (
    FeatureStore,
    Landing,
    MlflowRegistry,
    KubernetesDeployer,
    LocalDeployer,
    PiiMasking,
    PlatformState,
    Warehouse,
    mlflow_tracking,
)
from platform_assets.defs.train.assets import tracking_resource_key


def _env(name: str, default: str) -> str | dg.EnvVar:
    """``dg.EnvVar(name)`` when the variable is set (read at run time), else the embedded default."""
    return config.env_var(name, default)


def _tracking(tracking_uri: str | dg.EnvVar, artifact_root: str, declared: Sequence[UseCase] | None) -> dict:
    """dagster-mlflow's run resource, one per use case: its experiment is the use case's model name."""
    # dg.EnvVar is a str: a run-config resource takes it as {"env": name}.
    uri_config = {"env": tracking_uri.env_var_name} if isinstance(tracking_uri, dg.EnvVar) else tracking_uri
    return {
        tracking_resource_key(u): mlflow_tracking.configured(
            {"experiment_name": u.model_name, "mlflow_tracking_uri": uri_config, "artifact_root": artifact_root})
        for u in (use_cases() if declared is None else declared)
    }


DEPLOY_TARGET_ENV = "PLATFORM_DEPLOY_TARGET"


def _deployer():
    """The deployer ``PLATFORM_DEPLOY_TARGET`` names: ``local`` (default) or ``kubernetes`` (settings from
    ``SELDON_NAMESPACE``, ``SELDON_IMAGE``, ``SELDON_FETCH_IMAGE``, ``KUBECONFIG``)."""
    target = config.get(DEPLOY_TARGET_ENV)
    if target == "kubernetes":
        defaults = KubernetesDeployer()
        return KubernetesDeployer(
            namespace=_env("SELDON_NAMESPACE", defaults.namespace), image=_env("SELDON_IMAGE", defaults.image),
            fetch_image=_env("SELDON_FETCH_IMAGE", defaults.fetch_image), kubeconfig=_env("KUBECONFIG", ""))
    if target != "local":
        raise settings.ConfigurationError(f"{DEPLOY_TARGET_ENV}={target!r}: want 'local' or 'kubernetes'")
    return LocalDeployer(
        serving_python=_env("SERVING_PYTHON", ""),
        http_port=config.get_int("SERVING_PORT"),
        host=_env("SERVING_HOST", "127.0.0.1"),
    )


def embedded_resources(root: str | Path, declared: Sequence[UseCase] | None = None,
                       serving_port: int = LocalDeployer().http_port) -> dict:
    """Resources on the embedded defaults, every file under the state root ``root``; no environment variable is read.

    What one laptop runs on; :func:`build_resources` overrides them from the environment.
    ``declared``: the use cases to track in MLflow (default: those under ``platform_assets/defs/``).
    ``serving_port``: the first use case's stable endpoint (each next use case: +1).
    """
    paths = settings.paths(root)
    tracking_uri, artifact_root = f"sqlite:///{paths.mlflow / 'mlflow.db'}", str(paths.mlflow / "artifacts")
    return {
        "state": PlatformState(root=str(paths.root)),
        "landing": Landing(url=str(paths.landing)),
        "warehouse": Warehouse(database=str(paths.warehouse)),
        "dbt": feature_dbt.dbt_resource(),
        "feast": FeatureStore(repo_path=str(settings.feature_repo_dir()), state_root=str(paths.root)),
        "mlflow_registry": MlflowRegistry(tracking_uri=tracking_uri, artifact_root=artifact_root),
        **_tracking(tracking_uri, artifact_root, declared),
        "pii": PiiMasking.development(),
        "deployer": LocalDeployer(http_port=serving_port),
    }


def production_resources(declared: Sequence[UseCase] | None = None) -> dict:
    """The ``prod`` profile's resources: every file on the shared store, the warehouse a DuckLake whose catalog is
    in PostgreSQL, MLflow's backend and Feast's registry in PostgreSQL, Feast's online store on Redis.

    Raises:
        ConfigurationError: If a setting the profile needs is unset (every one is named).
    """
    config.require_profile()
    paths = settings.paths()  # the shared store
    artifact_root = str(paths.mlflow / "artifacts")
    tracking_uri = config.env_var("MLFLOW_TRACKING_URI")
    return {
        "state": PlatformState(root=str(paths.root)),
        "landing": Landing(url=_env("LANDING_URL", str(paths.landing))),
        "warehouse": Warehouse(catalog=config.env_var("PLATFORM_WAREHOUSE_URL"), data_path=str(paths.lake_data)),
        "dbt": feature_dbt.dbt_resource(),
        "feast": FeatureStore(repo_path=str(settings.feature_repo_dir()), state_root=str(paths.root),
                              yaml_file=str(settings.feature_store_yaml())),
        "mlflow_registry": MlflowRegistry(tracking_uri=tracking_uri, artifact_root=artifact_root),
        **_tracking(tracking_uri, artifact_root, declared),
        "pii": PiiMasking.from_environment(),
        "deployer": _deployer(),
    }


def build_resources(declared: Sequence[UseCase] | None = None) -> dict:
    """The code location's resources for the profile: :func:`production_resources` in ``prod``; in ``local``,
    :func:`embedded_resources` under the state root, each overridden by its environment variable when set
    (``dg.EnvVar``: read at run time)."""
    if config.profile() == config.PROD_PROFILE:
        return production_resources(declared)
    paths = settings.paths()
    resources = embedded_resources(paths.root, declared)
    tracking_uri = _env("MLFLOW_TRACKING_URI", resources["mlflow_registry"].tracking_uri)
    artifact_root = resources["mlflow_registry"].artifact_root
    return {
        **resources,
        "state": PlatformState(root=_env(settings.STATE_ROOT_ENV, str(paths.root))),
        "landing": Landing(url=_env("LANDING_URL", str(paths.landing))),
        "mlflow_registry": MlflowRegistry(tracking_uri=tracking_uri, artifact_root=artifact_root),
        **_tracking(tracking_uri, artifact_root, declared),
        "pii": PiiMasking.from_environment(),
        "deployer": _deployer(),
    }


def use_case_definitions() -> dg.Definitions:
    """What ``platform_assets/defs/`` defines: each declared use case (its component) and the stages' own sensors."""
    # The defs folder alone: dg.load_from_defs_folder also lists every installed package's component types for
    # the UI's catalogue, importing each package (dagster-dbt, and with it dbt-core: 2 s of every load).
    tree = dg.ComponentTree.for_project(settings.PROJECT_ROOT)
    return dg.Definitions.merge(tree.build_defs(tree.defs_module_path), dg.Definitions(component_tree=tree))


def _executor() -> dg.ExecutorDefinition:
    """``PLATFORM_RUN_EXECUTOR``: ``in_process`` (default: one process runs the steps in order; DuckDB allows one
    writer per file, and re-importing torch and feast in a process per step would cost seconds each) or
    ``k8s_job`` (dagster-k8s: each step in its own pod, configured like the run's)."""
    name = config.get("PLATFORM_RUN_EXECUTOR")
    if name == "k8s_job":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name != "in_process":
        raise settings.ConfigurationError(f"PLATFORM_RUN_EXECUTOR={name!r}: want 'in_process' or 'k8s_job'")
    return dg.in_process_executor


def build_definitions(resources: dict, declared: dg.Definitions | None = None) -> dg.Definitions:
    """The code location's definitions on ``resources``: each use case's, and the platform-wide sensors.

    ``declared``: the use cases' definitions (default: the components under ``platform_assets/defs/``).
    """
    platform = dg.Definitions(
        # The run-failure sensors (alert_on_failure, mlflow_runs_on_failure) are module-level definitions
        # of platform_assets/defs/<stage>/sensors.py: the defs-folder loader collects them.
        sensors=[automation_sensor()],
        resources=resources,
        executor=_executor(),
    )
    return dg.Definitions.merge(use_case_definitions() if declared is None else declared, platform)


defs = build_definitions(build_resources())

# The definitions and the libraries they load live as long as the process: move
# them out of the cyclic garbage collector's reach. Later collections (and the
# one at interpreter exit, about 0.5 s here) no longer walk these objects.
gc.freeze()

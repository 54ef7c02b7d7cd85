"""The code location: every stage's assets, checks and resources in one Definitions."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import dagster as dg

from platform_assets import settings
from platform_assets.automation import automation_sensor, with_automation
from platform_assets.declared import use_case
from platform_assets.deploy import assets as deploy_assets
from platform_assets.deploy import checks as deploy_checks
from platform_assets.evaluate import assets as evaluate_assets
from platform_assets.evaluate import checks as evaluate_checks
from platform_assets.features import assets as feature_assets
from platform_assets.features import checks as feature_checks
from platform_assets.features import dbt as feature_dbt
from platform_assets.ingest import assets as ingest_assets
from platform_assets.ingest import checks as ingest_checks
from platform_assets.ingest.sensors import landing_files_sensor
from platform_assets.monitor import assets as monitor_assets
from platform_assets.monitor import checks as monitor_checks
from platform_assets.monitor.sensors import (
    alert_on_failure,
    inference_days_job,
    inference_log_files,
    outcome_days_job,
    outcome_files,
    retrain_job,
    retrain_on_drift,
    retrain_on_new_labels,
    retrain_schedule,
)
from platform_assets.resources import (
    FeatureStore,
    Landing,
    MlflowRegistry,
    ModelServing,
    PiiMasking,
    PlatformState,
    Warehouse,
    mlflow_tracking,
)
from platform_assets.train import assets as train_assets
from platform_assets.train import checks as train_checks
from platform_assets.train.sensors import mlflow_runs_on_failure
from platform_assets.validate import assets as validate_assets
from platform_assets.validate import checks as validate_checks

ASSET_MODULES = [ingest_assets, validate_assets, feature_dbt, feature_assets, train_assets, evaluate_assets, deploy_assets, monitor_assets]
CHECK_MODULES = [ingest_checks, validate_checks, feature_checks, train_checks, evaluate_checks, deploy_checks, monitor_checks]


def _env(name: str, default: str) -> str | dg.EnvVar:
    """``dg.EnvVar(name)`` when the variable is set (read at run time), else the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(root: str | Path | None = None) -> dict:
    """Resources on the embedded defaults under ``root``, overridden by environment variables.

    With ``root`` given (tests), everything lives under it and the environment is ignored.
    """
    pinned = root is not None
    paths = settings.paths(root)
    state_root = str(paths.root) if pinned else _env(settings.STATE_ROOT_ENV, str(paths.root))
    # Pinned: the SQLite backend under the root, whatever MLFLOW_TRACKING_URI says (mlflow.set_tracking_uri
    # exports that variable, so a value left by an earlier run in the same process must not leak in).
    local_tracking_uri = f"sqlite:///{paths.mlflow / 'mlflow.db'}"
    tracking_uri = local_tracking_uri if pinned else _env("MLFLOW_TRACKING_URI", local_tracking_uri)
    artifact_root = str(paths.mlflow / "artifacts")
    model_name = use_case().model_name
    return {
        "state": PlatformState(root=state_root),
        "landing": Landing(url=str(paths.landing) if pinned else _env("LANDING_URL", str(paths.landing))),
        "warehouse": Warehouse(database=str(paths.warehouse)),
        "dbt": feature_dbt.dbt_resource(),
        "feast": FeatureStore(repo_path=str(settings.PROJECT_ROOT / "feature_repo"), state_root=str(paths.root)),
        "mlflow_registry": MlflowRegistry(tracking_uri=tracking_uri, experiment_name=model_name,
                                          registered_model_name=model_name, artifact_root=artifact_root),
        "mlflow": mlflow_tracking.configured(
            {
                "experiment_name": model_name,
                "mlflow_tracking_uri": tracking_uri if isinstance(tracking_uri, str) else {"env": "MLFLOW_TRACKING_URI"},
                "artifact_root": artifact_root,
            }
        ),
        "pii": PiiMasking.from_environment(pinned),
        "serving": ModelServing(
            serving_python=_env("SERVING_PYTHON", "") if not pinned else "",
            http_port=int(os.environ.get("SERVING_PORT", "9100")),
            host=_env("SERVING_HOST", "127.0.0.1") if not pinned else "127.0.0.1",
        ),
    }


DAILY_GROUPS = ("ingest", "validate")

# The daily-partitioned data assets, run for a day or a range of days (one run per range).
ingest_days_job = dg.define_asset_job(
    "ingest_days",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS),
    description="Ingest and validate landing files for a day or a range of days.",
)
# Everything after validation up to serving: features, training, the gate, deployment.
features_to_serving_job = dg.define_asset_job(
    "features_to_serving",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(*DAILY_GROUPS, "monitor"),
    description="Build features from all validated days, train, evaluate and deploy.",
)
# Outcomes joined to served predictions, then drift and quality of the served model.
drift_job = dg.define_asset_job(
    "drift",
    selection=dg.AssetSelection.assets(monitor_assets.LABELLED_PREDICTIONS, monitor_assets.DRIFT_REPORT),
    description="Join known outcomes to served predictions and report drift and live quality.",
)

def build_definitions(resources: dict) -> dg.Definitions:
    """The code location's definitions on ``resources``: assets with their automation, checks, jobs, sensors."""
    # Each asset gets its automation condition from platform_assets.automation (one place).
    assets = [a.map_asset_specs(with_automation) if isinstance(a, dg.AssetsDefinition) else a
              for a in dg.load_assets_from_modules(ASSET_MODULES)]
    return dg.Definitions(
        assets=assets,
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[ingest_days_job, features_to_serving_job, inference_days_job, outcome_days_job, drift_job, retrain_job],
        sensors=[landing_files_sensor, mlflow_runs_on_failure, inference_log_files, outcome_files, retrain_on_drift,
                 retrain_on_new_labels, alert_on_failure, automation_sensor()],
        schedules=[retrain_schedule],
        resources=resources,
        # One process runs the steps in order: DuckDB allows one writer per file,
        # and re-importing torch/feast in a process per step would cost seconds each.
        executor=dg.in_process_executor,
    )


defs = build_definitions(build_resources())

# The definitions and the libraries they load live as long as the process: move
# them out of the cyclic garbage collector's reach. Later collections (and the
# one at interpreter exit, about 0.5 s here) no longer walk these objects.
gc.freeze()

"""Checks on training: the loss went down and stayed finite; the run and version carry their lineage."""


import dagster as dg

from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.train.assets import MODEL


@dg.asset_check(asset=MODEL, blocking=True, description="Validation loss fell below its first value and is finite.")
def model_loss_converged(mlflow_registry: MlflowRegistry) -> dg.AssetCheckResult:
    """Reads the challenger's run history from MLflow and compares first and best losses."""
    import math

    from platform_assets.train.registry import CHALLENGER

    client = mlflow_registry.client()
    version = client.get_model_version_by_alias(mlflow_registry.registered_model_name, CHALLENGER)
    history = client.get_metric_history(version.run_id, "val_loss")
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    finite = all(math.isfinite(v) for v in losses)
    improved = len(losses) > 1 and min(losses) < losses[0]
    return dg.AssetCheckResult(
        passed=finite and improved,
        metadata={"model_version": version.version, "first_val_loss": losses[0] if losses else float("nan"),
                  "best_val_loss": min(losses) if losses else float("nan"), "epochs": len(losses)},
    )


@dg.asset_check(
    asset=MODEL,
    description="The challenger's MLflow run has its lineage tags and dataset, and its stored weights match the logged hash.",
)
def model_tracked_and_registered(state: PlatformState, mlflow_registry: MlflowRegistry) -> dg.AssetCheckResult:
    """Downloads the challenger version, re-hashes its safetensors weights and reads its run's tags."""
    from platform_assets.train.network import weights_sha256
    from platform_assets.train.registry import CHALLENGER, load_version
    from platform_assets.train.tracking import DATA_VERSION_PREFIX

    client = mlflow_registry.client()
    name = mlflow_registry.registered_model_name
    version = client.get_model_version_by_alias(name, CHALLENGER)
    run = client.get_run(version.run_id)
    tags = run.data.tags
    missing = [t for t in ("dagster_run_id", "dagster_partition", "git_commit", "training_set_data_version",
                           "weights_sha256") if not tags.get(t)]
    data_version_tags = sorted(t for t in tags if t.startswith(DATA_VERSION_PREFIX))
    bundle = load_version(client, name, version.version, state.paths.reports / "train" / "check")
    stored = weights_sha256(bundle.net)
    datasets = [d.dataset.digest for d in run.inputs.dataset_inputs]
    passed = not missing and bool(data_version_tags) and bool(datasets) and stored == version.tags.get("weights_sha256")
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "model_version": version.version,
            "missing_tags": ", ".join(missing) or "none",
            "data_version_tags": ", ".join(data_version_tags) or "none",
            "dataset_digests": ", ".join(datasets) or "none",
            "stored_weights_sha256": stored,
        },
    )

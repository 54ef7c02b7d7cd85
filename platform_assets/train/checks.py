"""Checks on training: the loss went down and stayed finite."""


import dagster as dg

from platform_assets.resources import MlflowRegistry
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

"""The model asset: trains on the training set, tracks in MLflow, registers a version."""


import hashlib
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.features.assets import TRAINING_SET
from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.domain import LABEL, PROTECTED_ATTRIBUTE
from platform_assets.settings import PROJECT_ROOT

MODEL = dg.AssetKey(["train", "model"])
# Columns of the training set that are not model inputs.
NON_FEATURES = {"application_id", "applicant_id", "event_timestamp", "label_ts", PROTECTED_ATTRIBUTE, LABEL, "split"}


class TrainConfig(dg.Config):
    """Architecture and optimisation settings of the classifier."""

    hidden: list[int] = [64, 32]
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 5
    seed: int = 7


def git_commit() -> str:
    """The project's git commit, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dg.asset(
    key=MODEL,
    deps=[TRAINING_SET],
    group_name="train",
    kinds={"pytorch", "mlflow"},
    description="The loan-default classifier, registered in MLflow as the new challenger version.",
)
def model(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    state: PlatformState,
    mlflow_registry: MlflowRegistry,
    mlflow: dg.ResourceParam[Any],
) -> dg.MaterializeResult:
    """Trains the network, logs the run through dagster-mlflow and registers the version."""
    import mlflow as mlflow_lib
    import pandas as pd
    from mlflow.models import infer_signature

    from platform_assets.train.pyfunc import LoanDefaultPyfunc
    from platform_assets.train.registry import BUNDLE_ARTIFACT, CHALLENGER
    from platform_assets.train.trainer import TrainParams, train_model

    tracking = mlflow  # dagster-mlflow's run for this Dagster run
    df = pd.read_parquet(state.paths.training_set)
    features = [c for c in df.columns if c not in NON_FEATURES]
    params = TrainParams(
        hidden=tuple(config.hidden),
        dropout=config.dropout,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        max_epochs=config.max_epochs,
        patience=config.patience,
        seed=config.seed,
    )
    result = train_model(df[df["split"] == "train"], df[df["split"] == "validation"], features, LABEL, params)

    # The training set's data version is the sha256 of its file (see features.assets.training_set).
    training_digest = hashlib.sha256(state.paths.training_set.read_bytes()).hexdigest()
    tracking.log_params({**config.model_dump(), "features": ",".join(features)})
    for row in result.history:
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    tracking.log_metrics({"best_epoch": result.best_epoch, "best_val_loss": min(h["val_loss"] for h in result.history)})
    tracking.set_tags(
        {
            "dagster_partition": context.partition_key if context.has_partition_key else "none",
            "training_set_data_version": training_digest,
            "git_commit": git_commit(),
            "weights_sha256": result.weights_sha256,
        }
    )
    dataset = mlflow_lib.data.from_pandas(
        df, source=str(state.paths.training_set), name="training_set", targets=LABEL, digest=training_digest[:16]
    )
    tracking.log_input(dataset, context="training")

    example = df[features].head(5)
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / BUNDLE_ARTIFACT
        result.bundle.save(bundle_dir)
        info = mlflow_lib.pyfunc.log_model(
            name="model",
            python_model=LoanDefaultPyfunc(),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            signature=infer_signature(example, result.bundle.predict_proba(example)),
            input_example=example,
            registered_model_name=mlflow_registry.registered_model_name,
        )
    run_id = mlflow_lib.active_run().info.run_id
    version = str(info.registered_model_version)
    client = mlflow_registry.client()
    client.set_model_version_tag(mlflow_registry.registered_model_name, version, "weights_sha256", result.weights_sha256)
    client.set_model_version_tag(mlflow_registry.registered_model_name, version, "dagster_run_id", context.run_id)
    client.set_registered_model_alias(mlflow_registry.registered_model_name, CHALLENGER, version)
    # Without dagster-mlflow's end-of-run hook (plain `dagster asset materialize`) the run would stay RUNNING.
    mlflow_lib.end_run()
    last = result.history[-1]
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "weights_sha256": result.weights_sha256,
            "best_epoch": result.best_epoch,
            "epochs_run": int(last["epoch"]),
            "val_auc": result.history[result.best_epoch - 1]["val_auc"],
            "features": len(features),
            "train_rows": int((df["split"] == "train").sum()),
        }
    )

"""Checks on training, measured from the registered artifact and the data, not from what training reported."""


import dagster as dg

from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case
from platform_assets.defs.train.assets import lineage_keys


class ConvergenceConfig(dg.Config):
    """How much better than the base rate the registered model must be on the validation split."""

    # Its validation log loss at most this share of the base-rate predictor's (which learned nothing).
    max_loss_vs_base_rate: float = 0.95
    # The recomputed loss may differ from the logged best by this much (float32 against float64).
    loss_tolerance: float = 1e-3


def build_model_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of ``<use case>/train/model``."""
    keys = for_use_case(use_case)

    @dg.asset_check(
        asset=keys.model,
        blocking=True,
        description=(
            "The registered challenger, loaded from MLflow and scored now on the validation split, beats the "
            "base-rate predictor's log loss, and its loss is the best one its run logged."
        ),
    )
    def model_loss_converged(
        config: ConvergenceConfig, state: PlatformState, mlflow_registry: MlflowRegistry
    ) -> dg.AssetCheckResult:
        """Recomputes the validation loss of the registered artifact and compares with the base rate and the log."""
        import numpy as np

        from platform_assets.evaluate.metrics import log_loss  # pandas: not at code-location load
        from platform_assets.features.training_file import split_batches

        from platform_assets.train.registry import CHALLENGER, load_version

        client = mlflow_registry.client()
        name = use_case.model_name
        version = client.get_model_version_by_alias(name, CHALLENGER)
        path = state.paths.of(use_case.name).training_set
        label = use_case.label
        train_labels = [b[label].to_numpy() for b in split_batches(path, "train", [label])]
        base_rate = float(np.concatenate(train_labels).mean()) if train_labels else float("nan")
        bundle = load_version(client, name, version.version, state.paths.of(use_case.name).reports / "train" / "check")
        # The whole validation split, a batch at a time: the same rows the training stopped on.
        rows, loss, base_loss = 0, 0.0, 0.0
        for batch in split_batches(path, "validation"):
            y = batch[label].to_numpy()
            loss += log_loss(y, bundle.predict_proba(batch)) * len(y)
            base_loss += log_loss(y, [base_rate] * len(y)) * len(y)
            rows += len(y)
        loss, base_loss = (loss / rows, base_loss / rows) if rows else (float("nan"), float("nan"))
        logged = [m.value for m in client.get_metric_history(version.run_id, "val_loss")]
        best_logged = min(logged) if logged else float("nan")
        beats = loss <= config.max_loss_vs_base_rate * base_loss
        matches = bool(logged) and abs(loss - best_logged) <= config.loss_tolerance
        return dg.AssetCheckResult(
            passed=bool(beats and matches),
            metadata={
                "model_version": version.version,
                "validation_rows": rows,
                "validation_loss_now": loss,
                "base_rate_loss": base_loss,
                "loss_vs_base_rate": loss / base_loss if base_loss else float("nan"),
                "best_logged_val_loss": best_logged,
                "epochs_logged": len(logged),
            },
        )


    @dg.asset_check(
        asset=keys.model,
        description=(
            "The challenger's MLflow run names a real data version for every upstream asset, the bytes it trained on "
            "are the training set version Dagster recorded, and its stored weights match the logged hash."
        ),
    )
    def model_tracked_and_registered(state: PlatformState, mlflow_registry: MlflowRegistry) -> dg.AssetCheckResult:
        """Downloads the challenger version, re-hashes its weights, and compares its run's lineage tags."""
        from platform_assets.train.network import weights_sha256
        from platform_assets.train.registry import CHALLENGER, load_version
        from platform_assets.train.tracking import DATA_VERSION_PREFIX

        client = mlflow_registry.client()
        name = use_case.model_name
        version = client.get_model_version_by_alias(name, CHALLENGER)
        tags = client.get_run(version.run_id).data.tags
        problems = [f"tag {t} missing" for t in ("dagster_run_id", "dagster_partition", "git_commit",
                                                 "training_set_data_version", "weights_sha256") if not tags.get(t)]
        lineage = {key.to_user_string(): tags.get(f"{DATA_VERSION_PREFIX}{key.to_user_string()}")
                   for key in lineage_keys(use_case)}
        problems += [f"no data version for {k} (got {v!r})" for k, v in lineage.items() if v in (None, "", "none")]
        # Two producers: the training set asset's recorded version (its file's hash) and the bytes the model read.
        trained_on = tags.get("training_set_data_version")
        recorded = lineage.get(keys.training_set.to_user_string())
        if recorded != trained_on:
            problems.append(f"trained on bytes {str(trained_on)[:12]}, but the training set version recorded is "
                            f"{str(recorded)[:12]}")
        # (The MLflow dataset's digest is written from the same hash as training_set_data_version: comparing
        # the two would measure nothing.)
        workdir = state.paths.of(use_case.name).reports / "train" / "check"
        stored = weights_sha256(load_version(client, name, version.version, workdir).net)
        if stored != version.tags.get("weights_sha256"):
            problems.append(f"stored weights hash {stored[:12]} differs from the version's tag")
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems)[:1000] if problems else None,
            metadata={
                "model_version": version.version,
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
                "data_versions": dg.MetadataValue.json(lineage),
                "stored_weights_sha256": stored,
            },
        )

    return [model_loss_converged, model_tracked_and_registered]

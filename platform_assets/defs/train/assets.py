"""The model asset: a small candidate search on the training set, tracked in MLflow, the best registered."""


import tempfile
from pathlib import Path
from typing import Iterable

import dagster as dg

from platform_assets import cost
from platform_assets.cost import with_cost
from platform_assets.declarations import UseCase
from platform_assets.features.training_set import TRAINING_FILES_ARTIFACT, read_manifest
from platform_assets.keys import for_use_case
from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.settings import PROJECT_ROOT

# The pyfunc wrapper's file, logged as the model's code (importing it would load mlflow).
PYFUNC_CODE = PROJECT_ROOT / "platform_assets" / "train" / "pyfunc.py"
# Dagster records an asset's data version in this tag of each materialization.
DATA_VERSION_TAG = "dagster/data_version"


def tracking_resource_key(use_case: UseCase) -> str:
    """The key of the use case's dagster-mlflow run resource (its experiment is the model's name)."""
    return f"mlflow_{use_case.name}"


def lineage_keys(use_case: UseCase) -> tuple[dg.AssetKey, ...]:
    """Upstream assets whose data versions the MLflow run records (lineage of the model)."""
    keys = for_use_case(use_case)
    return (keys.training_set, keys.feature_store, *(keys.feature(m) for m in use_case.feature_marts))


def upstream_data_versions(instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]) -> dict[str, str]:
    """The data version of the latest materialization of each key (``none`` if never materialized).

    Read from the instance's event log, so it names the versions the model was
    actually trained on, whether they were materialized in this run or an earlier one.
    """
    versions = {}
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event else None
        tags = (materialization.tags or {}) if materialization else {}
        versions[key.to_user_string()] = tags.get(DATA_VERSION_TAG, "none")
    return versions


class CandidateConfig(dg.Config):
    """One architecture and optimiser setting tried by the search."""

    hidden: list[int] = [64, 32]
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5


class TrainConfig(dg.Config):
    """The candidates to search (the best on validation loss is registered) and shared settings."""

    candidates: list[CandidateConfig] = [
        {"hidden": [64, 32], "dropout": 0.1, "learning_rate": 1e-3},
        {"hidden": [32], "dropout": 0.0, "learning_rate": 3e-3},
        {"hidden": [128, 64], "dropout": 0.2, "learning_rate": 1e-3},
    ]
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 5
    seed: int = 7
    num_threads: int = 1
    # Blocks of 65,536 training rows an epoch holds and shuffles at once: memory follows this, not the data.
    shuffle_blocks: int = 4


def train_params(config: TrainConfig) -> list["TrainParams"]:  # noqa: F821
    """One ``TrainParams`` per configured candidate, sharing batch size, epochs, patience and seed."""
    from platform_assets.train.trainer import TrainParams

    return [
        TrainParams(
            hidden=tuple(c.hidden), dropout=c.dropout, learning_rate=c.learning_rate, weight_decay=c.weight_decay,
            batch_size=config.batch_size, max_epochs=config.max_epochs, patience=config.patience, seed=config.seed,
            num_threads=config.num_threads, shuffle_blocks=config.shuffle_blocks,
        )
        for c in map(_candidate, config.candidates)
    ]


def dagster_run_id(context) -> str:
    """The Dagster run this step is part of; ``none`` when the asset is invoked directly (a test or a script
    calling the function, as ``benchmarks/plain_stages.py`` does: Dagster's direct invocation has no run)."""
    if isinstance(context, dg.AssetExecutionContext) and type(context).__name__ == "DirectAssetExecutionContext":
        return "none"
    return context.run.run_id


def _candidate(value: "CandidateConfig | dict") -> CandidateConfig:
    # Dagster builds CandidateConfig objects from run config; a TrainConfig made in Python keeps the dict defaults.
    return CandidateConfig(**value) if isinstance(value, dict) else value


def _train_and_register(
    context, config, state, client, name: str, mlflow_lib, settled: dict, use_case: UseCase
) -> dg.MaterializeResult:
    """The candidate search, its tracking and the registration of the best, in the active MLflow run.

    The training set is read from one open file: its digest is that of the bytes trained on (the file is only
    ever replaced, never rewritten in place), read split by split in batches (``train.stream``).
    """
    import pyarrow.parquet as pq

    from platform_assets.features import training_file
    from platform_assets.train import tracking
    from platform_assets.train import registration
    from platform_assets.train.stream import TrainingData
    from platform_assets.train.trainer import search_on

    training_set = state.paths.of(use_case.name).training_set
    with open(training_set, "rb") as file, tempfile.TemporaryDirectory(prefix="encoded-") as tmp:
        training_digest = training_file.sha256_of(file)
        parquet = pq.ParquetFile(file)
        # Keys, times, label, protected and personal data are never model inputs.
        features = [c for c in training_file.columns_of(parquet) if c not in use_case.never_features]
        split_rows = training_file.split_rows(parquet)
        for split in ("train", "validation"):
            if not split_rows[split]:
                raise ValueError(f"the training set {training_set} has no {split} rows ({split_rows}): nothing to "
                                 "train or stop on")
        columns = [*features, use_case.label]
        data = TrainingData.encode(lambda: training_file.split_batches(parquet, "train", columns),
                                   lambda: training_file.split_batches(parquet, "validation", columns),
                                   features, use_case.label, Path(tmp))
        chosen, results = search_on(data, train_params(config))
        example = training_file.first_rows(parquet, "train", 5)[columns]
        manifest = read_manifest(file)
    result = results[chosen]
    child_runs = tracking.log_candidates(results, chosen)

    # training_digest equals the training set's data version (the sha256 of its file, see features.assets).
    data_versions = upstream_data_versions(context.instance, lineage_keys(use_case))
    mlflow_lib.log_params({**tracking.candidate_params(result), "candidates": len(results),
                           "chosen_candidate": chosen, "features": ",".join(features)})
    tracking.log_history(result)
    mlflow_lib.set_tags(
        {
            "dagster_run_id": dagster_run_id(context),
            "dagster_partition": context.partition_key if context.has_partition_key else "none",
            "training_set_data_version": training_digest,
            "git_commit": tracking.git_commit(),
            "weights_sha256": result.weights_sha256,
            **{f"{tracking.DATA_VERSION_PREFIX}{k}": v for k, v in data_versions.items()},
        }
    )
    mlflow_lib.log_input(tracking.training_dataset(example, str(training_set), use_case.label, training_digest,
                                                   sum(split_rows.values())), context="training")
    # The landing and outcome files these bytes were built from, with their hashes then (lineage reads it).
    if manifest is not None:
        mlflow_lib.log_dict(manifest, TRAINING_FILES_ARTIFACT)

    run_id = mlflow_lib.active_run().info.run_id
    version_tags = {"weights_sha256": result.weights_sha256, "dagster_run_id": dagster_run_id(context)}
    model_version = registration.register(
        client, name, lambda: _log_pyfunc(mlflow_lib, result, example[features].head(5)), run_id, version_tags
    )
    version = str(model_version.version)
    spent = cost.so_far()  # the whole step, registration included; its materialization records the same
    if spent is not None:
        mlflow_lib.log_metrics({"cost_wall_s": spent.wall_s, "cost_cpu_s": spent.cpu_s,
                                "cost_peak_rss_mb": spent.peak_rss_mb})
    # Without dagster-mlflow's end-of-run hook (plain `dagster asset materialize`) the run would stay RUNNING.
    mlflow_lib.end_run()
    context.log.info(f"candidate {chosen} of {len(results)} registered as {name} v{version}")
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "weights_sha256": result.weights_sha256,
            "chosen_candidate": chosen,
            "candidate_search": dg.MetadataValue.md(tracking.search_table(results, chosen)),
            "candidate_runs": dg.MetadataValue.json(child_runs),
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "val_loss": result.best_val_loss,
            "val_auc": result.best_val_auc,
            "upstream_data_versions": dg.MetadataValue.json(data_versions),
            "features": len(features),
            "train_rows": split_rows["train"],
            **settled,
        }
    )


def _log_pyfunc(mlflow_lib, result, example) -> str:
    """Logs the bundle as a pyfunc model (code, no pickle) to the active run; returns the model's URI."""
    from mlflow.models import infer_signature

    from platform_assets.train import tracking
    from platform_assets.train.registry import BUNDLE_ARTIFACT

    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / BUNDLE_ARTIFACT
        result.bundle.save(bundle_dir)
        info = mlflow_lib.pyfunc.log_model(
            name="model",
            # Logged as code (no pickle), with the platform modules it imports.
            python_model=str(PYFUNC_CODE),
            code_paths=tracking.model_code_paths(Path(tmp) / "code"),
            pip_requirements=tracking.pip_requirements(),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            signature=infer_signature(example, result.bundle.predict_proba(example)),
            input_example=example,
        )
    return info.model_uri


def build_model_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/train/model``: the candidate search on its training set, the best registered as challenger."""
    keys = for_use_case(use_case)

    @dg.asset(
        key=keys.model,
        deps=[keys.training_set],
        group_name=use_case.name,
        kinds={"pytorch", "mlflow"},
        description=f"The {use_case.model_name} classifier of {use_case.label}, registered in MLflow as the new "
                    "challenger version.",
        # dagster-mlflow's run resource is one per use case (its experiment): its key is not a fixed
        # parameter name, so every resource of this asset is named here.
        required_resource_keys={"state", "mlflow_registry", tracking_resource_key(use_case)},
    )
    @with_cost
    def model(context: dg.AssetExecutionContext, config: TrainConfig) -> dg.MaterializeResult:
        """Trains each candidate (an MLflow child run each), logs and registers the best as ``challenger``.

        First ends the MLflow runs that earlier Dagster runs left RUNNING and settles
        model versions left without their tags (see :mod:`platform_assets.defs.train.runs`
        and :func:`platform_assets.train.registration.repair_versions`).
        """
        import mlflow as mlflow_lib

        from platform_assets.defs.train import runs
        from platform_assets.train import registration

        # The tracking resource is requested for its side effect: dagster-mlflow starts (or resumes) this
        # Dagster run's MLflow run, the active run that the mlflow functions below log to.
        state: PlatformState = context.resources.state
        mlflow_registry: MlflowRegistry = context.resources.mlflow_registry
        client = mlflow_registry.client()
        name = use_case.model_name
        try:
            # First of all: a later sweep can then tell whether this worker died.
            mlflow_lib.set_tags(runs.worker_tags())
            # What earlier runs killed or failed left behind is settled before anything new is added.
            ended = runs.sweep_orphaned_runs(client, mlflow_lib.active_run().info.experiment_id, context.instance,
                                             dagster_run_id(context))
            repairs = registration.repair_versions(client, name, state.paths.of(use_case.name).reports / "train" / "repair")
            for item in [*ended, *repairs]:
                context.log.warning(f"settled after an earlier run: {item}")
            settled = {
                "mlflow_runs_ended": dg.MetadataValue.json([vars(e) for e in ended]),
                "versions_repaired": dg.MetadataValue.json([vars(r) for r in repairs]),
            }
            return _train_and_register(context, config, state, client, name, mlflow_lib, settled, use_case)
        except BaseException:
            # A failed step must not leave the MLflow run RUNNING (a retried step resumes it as RUNNING again).
            mlflow_lib.end_run(status="FAILED")
            raise

    return model

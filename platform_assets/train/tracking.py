"""What the model's MLflow run records: candidates as child runs, lineage tags, the search table, model code.

Plain functions over the ``mlflow`` module, so that the model asset stays a thin wrapper. Imported only inside asset bodies (it loads mlflow).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
import mlflow

from platform_assets.settings import PROJECT_ROOT
from platform_assets.train.trainer import TrainResult

# MLflow tag prefix of an upstream asset's data version: ``data_version.features/training_set``.
DATA_VERSION_PREFIX = "data_version."


def git_commit() -> str:
    """The project's git commit, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def candidate_params(result: TrainResult) -> dict[str, object]:
    """A candidate's hyperparameters as flat MLflow params."""
    p = result.params
    return {
        "hidden": ",".join(str(h) for h in p.hidden),
        "dropout": p.dropout,
        "learning_rate": p.learning_rate,
        "weight_decay": p.weight_decay,
        "batch_size": p.batch_size,
        "max_epochs": p.max_epochs,
        "patience": p.patience,
        "seed": p.seed,
        "num_threads": p.num_threads,
        "shuffle_blocks": p.shuffle_blocks,
    }


def training_dataset(example, source: str, label: str, digest: str, rows: int):
    """The training set as an MLflow dataset input: its file, digest and schema (from ``example``, a few of its
    rows), without loading it; its profile holds the row count ``rows``."""
    from mlflow.data.meta_dataset import MetaDataset
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.models import infer_signature

    class TrainingSetDataset(MetaDataset):
        @property
        def profile(self):
            return {"num_rows": rows, "num_elements": rows * len(example.columns), "targets": label}

    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways": all of them local files
        warnings.simplefilter("ignore", UserWarning)
        resolved = resolve_dataset_source(source)
    return TrainingSetDataset(resolved, name="training_set", digest=digest[:16], schema=infer_signature(example).inputs)


def log_history(result: TrainResult) -> None:
    """Per-epoch losses and AUC of one training run into the active MLflow run."""
    for row in result.history:
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    mlflow.log_metrics({"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                        "best_val_auc": result.best_val_auc})


def log_candidates(results: list[TrainResult], chosen: int) -> list[str]:
    """Logs every candidate as a child run of the active run; returns the child run ids.

    Child runs carry no ``dagster_run_id`` tag on purpose: dagster-mlflow finds
    a Dagster run's MLflow run by that tag and must find the parent.
    """
    run_ids = []
    for index, result in enumerate(results):
        with mlflow.start_run(run_name=f"candidate-{index}", nested=True) as child:
            mlflow.log_params(candidate_params(result))
            log_history(result)
            # Labelled as what they are in MLflow's run list: one candidate of the parent's search, and its verdict.
            verdict = "chosen: registered by the parent run" if index == chosen else "not chosen"
            mlflow.set_tags({"candidate": str(index), "chosen": str(index == chosen).lower(),
                             "weights_sha256": result.weights_sha256, "platform.role": "search candidate",
                             "mlflow.note.content": f"Candidate {index} of the hyperparameter search "
                                                    f"({verdict}; the best validation loss is chosen)."})
            run_ids.append(child.info.run_id)
    return run_ids


def search_table(results: list[TrainResult], chosen: int) -> str:
    """The candidate search as a Markdown table (one row per candidate)."""
    lines = [
        "| candidate | hidden | dropout | learning rate | epochs run | best epoch | best val loss | val ROC AUC | weights | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, r in enumerate(results):
        lines.append(
            f"| {index} | {list(r.params.hidden)} | {r.params.dropout} | {r.params.learning_rate:g} | "
            f"{len(r.history)} | {r.best_epoch} | {r.best_val_loss:.4f} | {r.best_val_auc:.4f} | "
            f"`{r.weights_sha256[:12]}` | {'**yes**' if index == chosen else ''} |"
        )
    return "\n".join(lines) + "\n"


# The modules the pyfunc wrapper needs at load time, copied into the logged model as its code.
MODEL_CODE_MODULES = ("__init__.py", "train/__init__.py", "train/network.py", "train/registry.py")


def model_code_paths(target: Path) -> list[str]:
    """Copies the modules the pyfunc wrapper imports into ``target/platform_assets``; returns the code path.

    Explicit rather than MLflow's ``infer_code_paths``, which runs a subprocess
    and took about 3 s per logged model here.
    """
    package = Path(__file__).resolve().parent.parent
    for module in MODEL_CODE_MODULES:
        (target / "platform_assets" / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / module, target / "platform_assets" / module)
    return [str(target / "platform_assets")]


def pip_requirements() -> list[str]:
    """The logged model's requirements, pinned to this environment's versions.

    Explicit rather than inferred: MLflow's inference imports the model in a
    subprocess (about 4 s per logged model here).
    """
    from importlib.metadata import version

    # A local build such as 2.13.0+cpu is installed by its public version.
    return [f"{name}=={version(name).split('+')[0]}" for name in ("mlflow", "torch", "numpy", "pandas", "safetensors")]

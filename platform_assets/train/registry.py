"""Reading model versions back from the MLflow registry as bundles."""

from __future__ import annotations

from pathlib import Path

from platform_assets.train.network import ModelBundle, load_bundle

BUNDLE_ARTIFACT = "bundle"
CHALLENGER = "challenger"
CHAMPION = "champion"
GATE_TAG = "gate"


def download_bundle(client, name: str, version: str, target: Path) -> Path:
    """Downloads model version ``version`` into ``target``; returns the bundle directory inside it."""
    import mlflow

    target.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}",
        dst_path=str(target),
        tracking_uri=client._tracking_client.tracking_uri,
    )
    return Path(local) / "artifacts" / BUNDLE_ARTIFACT


def load_version(client, name: str, version: str, workdir: Path) -> ModelBundle:
    """Loads a registered version as a :class:`ModelBundle` (safetensors, no unpickling)."""
    return load_bundle(download_bundle(client, name, version, workdir / f"v{version}"))


def alias_version(client, name: str, alias: str) -> str | None:
    """The version an alias points at, or ``None`` when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None

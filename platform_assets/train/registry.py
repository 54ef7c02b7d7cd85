"""Reading model versions back from the MLflow registry as bundles; the marks a rollback leaves on them."""

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


# A rollback's mark on the version it took off serving: ``true`` while it holds, ``cleared`` once a person
# cleared it (the deployment's promotion on live quality refuses ``true`` too).
ROLLED_BACK_TAG = "rolled_back"
ROLLED_BACK_AT_TAG = "rolled_back_at"
ROLLED_BACK_RUN_TAG = "rolled_back_by_run"
ROLLBACK_CLEARED_TAG = "rollback_cleared"


def mark_rolled_back(client, name: str, version: str, run_id: str) -> None:
    """Marks ``version`` rolled back (when, and by which Dagster run): the gate refuses it and its weights since."""
    import datetime as dt

    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    # The mark first: a process killed after it leaves the version refused, with or without its date.
    client.set_model_version_tag(name, version, ROLLED_BACK_TAG, "true")
    client.set_model_version_tag(name, version, ROLLED_BACK_AT_TAG, when)
    client.set_model_version_tag(name, version, ROLLED_BACK_RUN_TAG, run_id)


def rolled_back_versions(client, name: str) -> list:
    """Every version of ``name`` marked rolled back and not cleared (all pages; none when the model is not registered)."""
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}' and tags.{ROLLED_BACK_TAG} = 'true'",
                                            max_results=1000, page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def clear_rollback(client, name: str, version: str, who: str) -> str:
    """Clears ``version``'s rollback mark (it stays in the registry as ``cleared``, with who cleared it and when).

    Returns:
        The ``rollback_cleared`` record written.

    Raises:
        ValueError: When the version is not marked rolled back.
    """
    import datetime as dt

    mark = client.get_model_version(name, version).tags.get(ROLLED_BACK_TAG)
    if mark != "true":
        raise ValueError(f"{name} version {version} is not rolled back (its {ROLLED_BACK_TAG} tag is {mark or 'unset'})")
    record = f"{who} at {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}"
    client.set_model_version_tag(name, version, ROLLBACK_CLEARED_TAG, record)
    client.set_model_version_tag(name, version, ROLLED_BACK_TAG, "cleared")
    return record

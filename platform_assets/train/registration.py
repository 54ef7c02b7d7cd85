"""Registering model versions that cannot be left without their tags, and repairing older ones.

A version is created together with its tags (``weights_sha256``,
``dagster_run_id``) in one call: MLflow's SQL registry store writes the version
row and its tag rows in one transaction (``SqlAlchemyStore.create_model_version``,
mlflow 3.17), so a process killed at any point leaves either no version or a
tagged one. The ``challenger`` alias follows; registering again for the same
MLflow run and weights reuses the version (a retried step does not add one).

Versions made by the older code path (registered first, tagged after) or by
other hands may still lack their tags; :func:`repair_versions` settles them at
the start of every model run. Nothing is ever deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from platform_assets.train.registry import CHALLENGER, GATE_TAG, alias_version

WEIGHTS_TAG = "weights_sha256"
DAGSTER_RUN_TAG = "dagster_run_id"
REQUIRED_TAGS = (WEIGHTS_TAG, DAGSTER_RUN_TAG)
ORPHANED_TAG = "orphaned"
ORPHANED_REASON_TAG = "orphaned_reason"
# The gate value of an orphan: not ``passed``, so the deployment refuses it (deploy.assets.approved_champion).
ORPHANED_GATE = "orphaned"
REPAIRED_TAG = "repaired_from_run"


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_versions` did to one version: ``repaired`` or ``orphaned``, and why."""

    version: str
    action: str
    detail: str


def _versions(client, name: str, filter_extra: str = "") -> list:
    """Every version of ``name`` matching the optional extra filter (all pages)."""
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'{filter_extra}", max_results=1000, page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def find_registered(client, name: str, run_id: str, tags: dict[str, str]):
    """The version of ``name`` registered from MLflow run ``run_id`` with exactly these tag values, or ``None``."""
    for version in _versions(client, name, f" and run_id = '{run_id}'"):
        if all(version.tags.get(k) == v for k, v in tags.items()):
            return version
    return None


def register(client, name: str, log_model: Callable[[], str], run_id: str, tags: dict[str, str]):
    """Logs and registers a model as a version of ``name`` with ``tags`` in one step, then points ``challenger`` at it.

    Idempotent: when a version registered from ``run_id`` with the same
    ``tags`` exists (a retried step resumes the same MLflow run and trains the
    same weights), nothing is logged again and only the alias is set.

    Args:
        client: An ``MlflowClient`` on the registry.
        name: The registered model.
        log_model: Logs the model to the active run and returns its URI
            (``models:/<model_id>``); called only when no such version exists.
        run_id: The MLflow run that logs it.
        tags: The version's tags; must include ``weights_sha256`` and ``dagster_run_id``.

    Returns:
        The model version.
    """
    import mlflow

    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        raise ValueError(f"refusing to register {name} from run {run_id} without tags {missing}")
    version = find_registered(client, name, run_id, tags)
    if version is None:
        # mlflow.register_model passes the tags to create_model_version: one transaction with the version.
        version = mlflow.register_model(log_model(), name, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER, str(version.version))
    return version


def _stored_weights(client, name: str, version: str, workdir: Path) -> str:
    from platform_assets.train.network import weights_sha256
    from platform_assets.train.registry import load_version

    return weights_sha256(load_version(client, name, version, workdir).net)


def _orphan(client, name: str, version, reason: str) -> Repair:
    previous_gate = version.tags.get(GATE_TAG)
    if previous_gate and previous_gate != ORPHANED_GATE:  # not one left by an interrupted earlier repair
        client.set_model_version_tag(name, version.version, "orphaned_previous_gate", previous_gate)
    client.set_model_version_tag(name, version.version, ORPHANED_REASON_TAG, reason)
    client.set_model_version_tag(name, version.version, GATE_TAG, ORPHANED_GATE)
    client.set_model_version_tag(name, version.version, ORPHANED_TAG, "true")
    # An orphan is no candidate: the evaluation must not judge (and possibly promote) it. Read the alias
    # afresh: versions from a registry search come without their aliases.
    if alias_version(client, name, CHALLENGER) == str(version.version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return Repair(str(version.version), "orphaned", reason)


def repair_versions(client, name: str, workdir: Path) -> list[Repair]:
    """Settles every version of ``name`` that lacks ``weights_sha256`` or ``dagster_run_id``.

    Policy, per such version (versions tagged ``orphaned=true`` are settled already):

    - **repaired** when its source MLflow run carries both tags and the
      version's stored weights re-hash to the run's ``weights_sha256``: the
      missing tags are copied from the run, plus ``repaired_from_run=<run id>``.
      It gets no alias and no gate tag, so it is never deployed unless a later
      evaluation passes it.
    - **orphaned** otherwise (source run gone or without the tags, weights that
      do not match, artifacts that cannot be read): tagged ``orphaned=true``,
      ``orphaned_reason``, and ``gate=orphaned`` (a previous gate value is kept
      in ``orphaned_previous_gate``), so the deployment refuses it; a
      ``challenger`` alias on it is removed.

    No version is deleted: an orphan stays visible in the registry with its reason.

    Args:
        client: An ``MlflowClient`` on the registry.
        name: The registered model (nothing happens when it does not exist yet).
        workdir: Scratch folder for downloading weights to verify.

    Returns:
        One :class:`Repair` per version settled.
    """
    from mlflow.exceptions import MlflowException

    done = []
    try:
        versions = _versions(client, name)
    except MlflowException:
        return done
    for version in versions:
        tags = version.tags
        if tags.get(ORPHANED_TAG) == "true" or all(tags.get(t) for t in REQUIRED_TAGS):
            continue
        try:
            run_tags = client.get_run(version.run_id).data.tags if version.run_id else {}
        except MlflowException:
            run_tags = {}
        missing = [t for t in REQUIRED_TAGS if not run_tags.get(t)]
        if not version.run_id or missing:
            reason = f"source run {version.run_id or 'none'} lacks {', '.join(missing) or 'nothing'}"
            done.append(_orphan(client, name, version, reason if version.run_id else "no source run"))
            continue
        try:
            stored = _stored_weights(client, name, str(version.version), workdir)
        except Exception as exc:  # noqa: BLE001 - any unreadable artifact makes the version an orphan, with the cause
            done.append(_orphan(client, name, version, f"stored weights unreadable: {type(exc).__name__}: {exc}"[:500]))
            continue
        if stored != run_tags[WEIGHTS_TAG]:
            reason = f"stored weights {stored[:12]} differ from run {version.run_id}'s {run_tags[WEIGHTS_TAG][:12]}"
            done.append(_orphan(client, name, version, reason))
            continue
        for key in REQUIRED_TAGS:
            if tags.get(key) != run_tags[key]:
                client.set_model_version_tag(name, version.version, key, run_tags[key])
        client.set_model_version_tag(name, version.version, REPAIRED_TAG, version.run_id)
        done.append(Repair(str(version.version), "repaired", f"tags copied from run {version.run_id}"))
    return done

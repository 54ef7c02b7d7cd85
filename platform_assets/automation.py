"""Declarative automation of the asset graph: which asset runs when, in one place.

* The feature layer (dbt models, the feature store) follows new validated
  partitions eagerly, never while an upstream blocking check fails.
* The first training set is built as soon as there are features; retraining
  is the ``retrain`` job, on a weekly schedule (``PLATFORM_RETRAIN_CRON``) and
  sooner when enough new labels arrived or when drift or quality decay says so
  (the sensors in :mod:`platform_assets.defs.monitor.sensors`: counting labels and
  judging drift need the warehouse and the report's figures, which conditions
  cannot read). The model, its evaluation, the champion
  alias (after the blocking gate) and the deployment follow eagerly; the deployment only after a new evaluation, not
  after each day's feature refresh.
* The inference log is ingested by the inference-log sensor (Dagster cannot see
  the server's files); outcomes join eagerly after it; the drift report runs
  eagerly after new traffic and on a cron (``PLATFORM_DRIFT_CRON``).

A blocking check stops downstream assets only within its own run (DESIGN.md):
``all_deps_blocking_checks_passed()`` carries that rule across runs.
Tick intervals are configuration: ``PLATFORM_AUTOMATION_INTERVAL_S``.
"""

from __future__ import annotations

import dagster as dg

from platform_assets import config

from platform_assets.keys import UseCaseKeys

RETRAIN_CRON_ENV = "PLATFORM_RETRAIN_CRON"
DRIFT_CRON_ENV = "PLATFORM_DRIFT_CRON"
INTERVAL_ENV = "PLATFORM_AUTOMATION_INTERVAL_S"


def retrain_cron() -> str:
    """When the model retrains at the latest (cron, UTC): weekly by default."""
    return config.get(RETRAIN_CRON_ENV)


def drift_cron() -> str:
    """When the drift report runs even without new traffic (cron, UTC): hourly by default."""
    return config.get(DRIFT_CRON_ENV)


def interval_s(default: int = 30) -> int:
    """Seconds between ticks of the automation and platform sensors."""
    return config.get_int(INTERVAL_ENV) if config.is_set(INTERVAL_ENV) else default


def after_updates() -> dg.AutomationCondition:
    """Eager, without waiting for every upstream partition: ``eager()`` holds an asset back while
    *any* partition of a daily upstream is missing, and a day without a landing file is
    never filled. Runs once after any upstream update (or when the asset goes missing)."""
    return (
        (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after_updates")


def gated(condition: dg.AutomationCondition, keys: UseCaseKeys, label: str) -> dg.AutomationCondition:
    """``condition``, held back while a blocking check of an upstream asset fails; ``label`` names the whole for
    the asset's overview in the UI (a condition without a top-level label shows there as nothing).

    Outcome files are left out of the gate: a use case whose labels come with the
    rows never lands one, and a dependency never materialized never has a
    passed check (the training set and the labelled predictions would wait forever).
    A failed outcome check still fails its own run and alerts.
    """
    checks_passed = dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(
        dg.AssetSelection.assets(keys.outcomes))
    return (condition & checks_passed).with_label(label)


def feature_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """The feature layer: after any upstream update (new validated days), eagerly."""
    return gated(after_updates(), keys, "after upstream updates, checks passed")


def training_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """The training set: the first one as soon as there are features. Later ones come from the
    ``retrain`` job: the weekly schedule and the drift and new-label sensors. (``on_cron`` here
    would also fire on the first evaluation after a manual build, retraining what was just trained.)"""
    first = (dg.AutomationCondition.missing() & dg.AutomationCondition.any_deps_updated()
             & ~dg.AutomationCondition.in_progress())
    return gated(first.with_label("first_training_set"), keys, "the first training set, checks passed")


def follow_training_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """Model and evaluation: right after the asset they are built from."""
    return gated(dg.AutomationCondition.eager(), keys, "eager, checks passed")


def deployment_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """The deployment: after the champion alias moved only (a daily feature refresh is served without a redeploy)."""
    return gated(after_updates().allow(dg.AssetSelection.assets(keys.champion)), keys,
                 "after the champion moved, checks passed")


def labelled_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """Outcomes joined to served predictions: after new traffic, new outcome files or new validated days."""
    return gated(after_updates(), keys, "after new traffic, outcomes or days, checks passed")


def drift_condition(keys: UseCaseKeys) -> dg.AutomationCondition:
    """The drift report: after new traffic or outcomes, and at each tick of its cron whether or not anything
    changed (``on_cron`` would wait for every upstream asset to update after the tick); not after retraining
    alone."""
    after_traffic = after_updates().allow(dg.AssetSelection.assets(keys.inference_log, keys.labelled_predictions))
    on_tick = (dg.AutomationCondition.cron_tick_passed(drift_cron()) & ~dg.AutomationCondition.in_progress()
               ).with_label(f"drift cron tick ({drift_cron()})")
    return gated(after_traffic | on_tick, keys, "after new traffic or outcomes, or on the drift cron; checks passed")


def conditions(keys: UseCaseKeys) -> dict[dg.AssetKey, dg.AutomationCondition]:
    """The condition of each asset of a use case that is automated (its feature layer in :func:`with_automation`)."""
    return {
        keys.training_set: training_condition(keys),
        keys.model: follow_training_condition(keys),
        keys.eval_report: follow_training_condition(keys),
        keys.champion: follow_training_condition(keys),
        keys.deployment: deployment_condition(keys),
        keys.labelled_predictions: labelled_condition(keys),
        keys.drift_report: drift_condition(keys),
    }


def with_automation(keys: UseCaseKeys):
    """A function giving a use case's ``spec`` its automation condition (for ``map_asset_specs``)."""
    chosen_for = conditions(keys)
    feature_layer = feature_condition(keys)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        chosen = chosen_for.get(spec.key)
        if chosen is None and spec.key.path[:2] == [keys.name, "features"]:
            chosen = feature_layer  # the dbt models and the feature store
        return spec.replace_attributes(automation_condition=chosen) if chosen is not None else spec

    return apply


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions: on by default, its interval from the environment."""
    return dg.AutomationConditionSensorDefinition(
        "platform_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_s(),
        description="Evaluates the automation conditions of platform_assets.automation.",
    )

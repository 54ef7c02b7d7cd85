"""The Dagster definitions of one declared use case: every stage's assets, checks, jobs and sensors.

Each stage module offers a builder that takes the :class:`~platform_assets.declarations.UseCase`;
this wires them together, gives each asset its automation condition
(:mod:`platform_assets.automation`) and adds the use case's jobs. The
component in :mod:`platform_assets.components` calls it for each
``platform_assets/defs/<use case>/defs.yaml``.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.automation import with_automation
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case


def use_case_jobs(use_case: UseCase) -> list:
    """``<use case>__ingest_days``, ``__features_to_serving``, ``__batch_days``, ``__drift``, ``__shadow_challenger``
    and ``__promote_on_live_quality``."""
    keys = for_use_case(use_case)
    daily = dg.AssetSelection.assets(keys.raw, keys.validated, keys.quarantined)
    monitor = dg.AssetSelection.key_prefixes([use_case.name, "monitor"])
    batch = dg.AssetSelection.assets(keys.batch_predictions)
    deploy_op = "__".join(keys.deployment.path)  # the deployment asset's op, for its run config
    return [
        # The daily-partitioned data assets, run for a day or a range of days (one run per range).
        dg.define_asset_job(f"{use_case.name}__ingest_days", selection=daily,
                            description="Ingest and validate landing files for a day or a range of days."),
        # Everything after validation up to serving: features, training, the gate, deployment.
        dg.define_asset_job(f"{use_case.name}__features_to_serving",
                            selection=dg.AssetSelection.key_prefixes([use_case.name]) - daily - monitor - batch,
                            description="Build features from all validated days, train, evaluate and deploy."),
        # Outcomes joined to served predictions, then drift and quality of the served model.
        # The champion's scores of a day's (or a range of days') valid rows, offline.
        dg.define_asset_job(f"{use_case.name}__batch_days", selection=batch,
                            description="Score the valid rows of a day or a range of days with the champion."),
        dg.define_asset_job(f"{use_case.name}__drift",
                            selection=dg.AssetSelection.assets(keys.labelled_predictions, keys.drift_report),
                            description="Join known outcomes to served predictions and report drift and live quality."),
        # The challenger beside the champion on a copy of live traffic, then promoted if it is not worse live.
        dg.define_asset_job(f"{use_case.name}__shadow_challenger", selection=dg.AssetSelection.assets(keys.deployment),
                            config={"ops": {deploy_op: {"config": {"role": "shadow"}}}},
                            description="Serve the challenger in shadow: a copy of live traffic, answers logged only."),
        dg.define_asset_job(f"{use_case.name}__promote_on_live_quality",
                            selection=dg.AssetSelection.assets(keys.deployment),
                            config={"ops": {deploy_op: {"config": {"promote_on_live_quality": True}}}},
                            description="Make the shadow (or canary) version stable if it passed the offline gate "
                                        "and is not worse than the stable one on labelled live requests."),
    ]


def build_use_case_definitions(use_case: UseCase) -> dg.Definitions:
    """Every asset, check, job, sensor and schedule of ``use_case`` (resources come from the code location)."""
    from platform_assets.defs.deploy.assets import (
        build_batch_predictions_asset, build_deployment_asset, build_rollback_job)
    from platform_assets.defs.deploy.checks import build_deployment_checks
    from platform_assets.defs.deploy.sensors import build_serving_watch_sensor
    from platform_assets.defs.evaluate.assets import build_evaluation_assets
    from platform_assets.defs.evaluate.checks import build_champion_audit, build_evaluation_checks
    from platform_assets.defs.features.assets import build_derived_mart_asset, build_feature_assets
    from platform_assets.defs.features.checks import build_feature_checks
    from platform_assets.defs.features.dbt import build_dbt_assets, has_dbt_models
    from platform_assets.defs.ingest.assets import build_raw_asset
    from platform_assets.defs.ingest.checks import build_raw_checks
    from platform_assets.defs.ingest.sensors import build_landing_sensor
    from platform_assets.defs.monitor.assets import build_monitor_assets
    from platform_assets.defs.monitor.checks import build_monitor_checks
    from platform_assets.defs.monitor.sensors import build_monitor_automation
    from platform_assets.defs.train.assets import build_model_asset
    from platform_assets.defs.train.checks import build_model_checks
    from platform_assets.defs.validate.assets import build_validation_asset
    from platform_assets.defs.validate.checks import build_validation_checks

    # The declared columns are checked against the schema when the raw asset runs: importing the schema
    # (pandera) here would slow down every load of the code location.
    batch_predictions, batch_check = build_batch_predictions_asset(use_case)
    # The features: the use case's dbt models (if it has a folder of them), and the derived mart if it declares none.
    features = [build_dbt_assets(use_case)] if has_dbt_models(use_case) else []
    if use_case.derives_features:
        features.append(build_derived_mart_asset(use_case))
    assets = [
        build_raw_asset(use_case), build_validation_asset(use_case), *features, *build_feature_assets(use_case),
        build_model_asset(use_case), *build_evaluation_assets(use_case),
        build_deployment_asset(use_case), batch_predictions, *build_monitor_assets(use_case),
    ]
    automate = with_automation(for_use_case(use_case))
    checks = [*build_raw_checks(use_case), *build_validation_checks(use_case), *build_feature_checks(use_case),
              *build_model_checks(use_case), *build_evaluation_checks(use_case),
              *build_deployment_checks(use_case), batch_check, *build_monitor_checks(use_case)]
    jobs, sensors, schedules = build_monitor_automation(use_case)
    audit_job, audit_schedule = build_champion_audit(use_case)
    return dg.Definitions(
        assets=[a.map_asset_specs(automate) for a in assets],
        asset_checks=checks,
        jobs=[*use_case_jobs(use_case), build_rollback_job(use_case), *jobs, audit_job],
        sensors=[build_landing_sensor(use_case), build_serving_watch_sensor(use_case), *sensors],
        schedules=[*schedules, audit_schedule],
    )

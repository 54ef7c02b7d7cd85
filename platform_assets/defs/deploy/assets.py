"""The deployment asset: the champion served by Seldon Core's microservice beside the Feast feature server."""


import json
from pathlib import Path

import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.declarations import UseCase, use_case_to_dict
from platform_assets.declared import use_case_index
from platform_assets.resources import Deployer, FeatureStore, MlflowRegistry, PlatformState, Warehouse

from platform_assets.keys import for_use_case
from platform_assets.cost import with_cost


class ModelNotApprovedError(dg.Failure):
    """The model version did not pass its evaluation gate; it is never served."""


def latest_deployment(instance: dg.DagsterInstance, deployment: dg.AssetKey) -> dict:
    """The serving record of the latest ``deployment`` materialization: url, model name and version, bundle,
    feature server (its ``deployment`` metadata; the same record is written to ``deployment.json`` for operators).

    Raises:
        dg.Failure: If nothing was deployed yet.
    """
    event = instance.get_latest_materialization_event(deployment)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "deployment" not in metadata:
        raise dg.Failure(f"{deployment.to_user_string()} was never materialized: no model is deployed")
    return metadata["deployment"].value


def approved_champion(client, name: str) -> str:
    """The champion version, if and only if its gate passed.

    A blocking check only stops downstream assets within its own run
    (dagster-io/dagster#25112); this is the deployment's own refusal, whichever
    run or sensor asked for it.

    Raises:
        ModelNotApprovedError: When there is no champion or its gate tag is not ``passed``.
    """
    from platform_assets.train.registry import CHAMPION, GATE_TAG, alias_version

    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise ModelNotApprovedError(f"registered model {name!r} has no champion: no version passed the gate")
    gate = client.get_model_version(name, version).tags.get(GATE_TAG)
    if gate != "passed":
        raise ModelNotApprovedError(f"refusing to deploy {name} version {version}: gate is {gate or 'missing'}")
    return version


class DeploymentConfig(dg.Config):
    """How the version is released: ``stable`` (blue/green: the approved champion takes over the stable endpoint),
    ``canary`` (the champion answers ``canary_weight`` of requests beside the stable one) or ``shadow`` (the
    challenger gets a copy of live traffic; its answers are logged, never returned)."""

    role: str = "stable"
    canary_weight: float = 0.1
    # Test rows a new version must answer as its bundle does (1e-5) before it gets any traffic.
    smoke_rows: int = 50
    # Promote the shadow (or canary) version to stable if, on the labelled requests it answered
    # beside the stable one, it is not worse live (and it passed the offline gate); else fail.
    promote_on_live_quality: bool = False
    min_labelled_rows: int = 200
    max_auc_drop: float = 0.0
    max_brier_rise: float = 0.0


def live_promotion(use_case: UseCase, paths, warehouse, client, config: DeploymentConfig,
                   instance: dg.DagsterInstance) -> tuple[str, dict]:
    """The shadow or canary version that may become stable on its live quality, and the comparison.

    Raises:
        dg.Failure: When none serves, it did not pass the offline gate (or was rolled back), too
            few of its answers are labelled yet, or it is worse live than the stable version.
    """
    from platform_assets.defs.evaluate.assets import gate_verdict
    from platform_assets.deploy import live_quality, release
    from platform_assets.monitor.outcomes import labels_query
    from platform_assets.warehouse import table_names

    current = release.read_release(paths.serving)
    role = "shadow" if current.get("shadow") else "canary" if current.get("canary") else None
    if role is None or not current.get("stable"):
        raise dg.Failure(f"no shadow or canary version of {use_case.name} serves beside a stable one under "
                         f"{paths.serving}: release the challenger with role 'shadow' first")
    stable, challenger = str(current["stable"]["version"]), str(current[role]["version"])
    tags = client.get_model_version(use_case.model_name, challenger).tags
    # The gate check's own verdict, as Dagster recorded it (the check writes no tag; tags can be edited).
    gate = gate_verdict(instance, for_use_case(use_case).eval_report, challenger)
    if gate != "passed":
        raise dg.Failure(f"{role} version {challenger} did not pass the offline gate "
                         f"(gate is {gate}): not promoted; version {stable} keeps serving")
    if tags.get("rolled_back") == "true":
        raise dg.Failure(f"{role} version {challenger} was rolled back before: not promoted automatically")
    ids, key = use_case.id_columns(), use_case.source.key
    stable_answers = live_quality.logged_answers(paths.inference, ids, key, {stable})
    if role == "shadow":
        challenger_answers = live_quality.logged_answers(paths.inference / live_quality.SHADOW_FOLDER, ids, key,
                                                         {challenger})
    else:
        challenger_answers = live_quality.logged_answers(paths.inference, ids, key, {challenger}, role="canary")
    with warehouse.connect(read_only=True) as con:
        labels = con.execute(labels_query(table_names(con), use_case)).df()
    comparison = live_quality.compare(stable_answers.rows, challenger_answers.rows, labels, key, use_case.label,
                                      stable, challenger, paired=role == "shadow")
    promote, reason = live_quality.decide(comparison, config.min_labelled_rows, config.max_auc_drop,
                                          config.max_brier_rise)
    found = {**comparison.to_dict(), "role": role, "decision": "promote" if promote else "keep", "reason": reason,
             "rejected_log_lines": stable_answers.rejected + challenger_answers.rejected}
    if not promote:
        raise dg.Failure(f"{reason}; version {stable} keeps serving", metadata={"live_comparison": dg.MetadataValue.json(found)})
    return challenger, found


def release_request(use_case: UseCase, state: PlatformState, feast: FeatureStore, version: str, bundle_dir: Path,
                    config: "DeploymentConfig | None" = None) -> "release.ReleaseRequest":  # noqa: F821
    """What the deployer is asked to release: ``version`` of the use case's model, its smoke rows, its files."""
    from platform_assets.deploy import release
    from platform_assets.features.training_file import first_rows

    config = config or DeploymentConfig()
    paths = state.paths.of(use_case.name)
    return release.ReleaseRequest(
        use_case=use_case, declaration=use_case_to_dict(use_case), version=str(version), bundle_dir=Path(bundle_dir),
        smoke_rows=first_rows(paths.training_set, "test", config.smoke_rows),
        serving_dir=paths.serving, port_offset=use_case_index(use_case),
        feature_repo=Path(feast.repo_path) if use_case.online_feature_service else None,
        state_root=Path(feast.state_root), inference_log_dir=paths.inference,
        role=config.role, canary_weight=config.canary_weight,
    )


def build_rollback_job(use_case: UseCase) -> dg.JobDefinition:
    """``<use case>__rollback``: the version that served before returns to the stable endpoint (blue/green, smoke-tested),
    and the registry's ``champion`` alias goes back to it, so that the next deployment does not bring back the bad one.

    The bad version is marked rolled back (:func:`platform_assets.train.registry.mark_rolled_back`): the gate and
    the champion asset refuse it, and any retrained version with identical weights, until a person clears it."""

    @dg.op(name=f"{use_case.name}__rollback_serving")
    def rollback_serving(context: dg.OpExecutionContext, state: PlatformState, mlflow_registry: MlflowRegistry,
                         deployer: Deployer, feast: FeatureStore) -> None:
        from platform_assets.deploy import release
        from platform_assets.train.registry import CHAMPION, GATE_TAG, mark_rolled_back

        client = mlflow_registry.client()
        try:
            bad = str(latest_deployment(context.instance, for_use_case(use_case).deployment)["model_version"])
            request = release_request(use_case, state, feast, bad, "")
            back = deployer.previous_version(request)
            request = release_request(use_case, state, feast, back, "")
            record = deployer.rollback(request, context.log.info)
        except release.ReleaseError as exc:
            raise dg.Failure(str(exc)) from None
        # Marked before the alias moves: from here the gate refuses the version and any identical weights.
        mark_rolled_back(client, use_case.model_name, bad, context.run_id)
        if client.get_model_version(use_case.model_name, back).tags.get(GATE_TAG) == "passed":
            client.set_registered_model_alias(use_case.model_name, CHAMPION, back)
        context.log.info(f"{use_case.model_name}: version {bad} rolled back; version {back} serves "
                         f"at {record['url']} and is the champion again; `python -m platform_assets clear-rollback "
                         f"--use-case {use_case.name} --version {bad}` lets it (or its weights) through the gate again")

    @dg.job(name=f"{use_case.name}__rollback", description=build_rollback_job.__doc__.split("\n")[0])
    def rollback():
        rollback_serving()

    return rollback


def build_deployment_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/deploy/deployment``: its champion served by the model server beside the Feast feature server."""
    keys = for_use_case(use_case)

    @dg.asset(
        key=keys.deployment,
        deps=[keys.champion, keys.feature_store, keys.training_set],
        group_name=use_case.name,
        kinds={"seldon", "pytorch", "feast"},
        pool=WAREHOUSE_POOL,  # a promotion on live quality reads the outcomes from the warehouse
        description=(
            "The champion served over REST by a Seldon Core microservice (with the Feast feature server it reads) "
            "behind the use case's stable endpoint; released blue/green: the new version starts beside the old, "
            "is smoke-tested, then takes over, and a failure leaves the old one serving."
        ),
    )
    @with_cost
    def deployment(
        context: dg.AssetExecutionContext,
        config: DeploymentConfig,
        state: PlatformState,
        mlflow_registry: MlflowRegistry,
        deployer: Deployer,
        feast: FeatureStore,
        warehouse: Warehouse,
    ) -> dg.MaterializeResult:
        """Downloads the approved champion's bundle (or the challenger's, for a shadow) and releases it."""
        from platform_assets.deploy import release
        from platform_assets.train.registry import CHALLENGER, alias_version, download_bundle

        paths = state.paths.of(use_case.name)
        client = mlflow_registry.client()
        name = use_case.model_name
        live = None
        if config.promote_on_live_quality:
            if config.role != "stable":
                raise dg.Failure(f"promote_on_live_quality releases as stable, not {config.role!r}")
            from platform_assets.train.registry import CHAMPION

            version, live = live_promotion(use_case, paths, warehouse, client, config, context.instance)
            context.log.info(live["reason"])
        elif config.role == "shadow":  # answers are never returned: the challenger need not have passed the gate
            version = alias_version(client, name, CHALLENGER)
            if version is None:
                raise dg.Failure(f"registered model {name!r} has no challenger to shadow")
        else:
            version = approved_champion(client, name)
        bundle_dir = download_bundle(client, name, version, paths.serving / "models" / f"v{version}")
        try:
            record = deployer.release(release_request(use_case, state, feast, version, bundle_dir, config),
                                      context.log.info)
        except release.ReleaseError as exc:
            raise dg.Failure(str(exc)) from None
        if live is not None:  # serving now: the registry follows
            client.set_registered_model_alias(name, CHAMPION, version)
            context.log.info(f"{name}: version {version} promoted on its live quality; it is the champion now")
        stable = record["stable"]
        own_bundle = str(bundle_dir) if stable["version"] == str(version) else None
        summary = {"url": record["url"], "model_name": name, "model_version": stable["version"],
                   "pid": stable.get("pid"), "bundle": stable.get("bundle") or own_bundle,
                   "backend_url": stable.get("url"), "feature_server_url": stable.get("feature_server_url"),
                   "feature_server_pid": stable.get("feature_server_pid"), "inference_log_dir": str(paths.inference),
                   **{role: (record[role] or {}).get("version") for role in ("canary", "shadow")},
                   "canary_weight": record.get("canary_weight", 0.0) if record.get("canary") else 0.0}
        (paths.serving / "deployment.json").write_text(json.dumps(summary, indent=2))
        return dg.MaterializeResult(
            metadata={
                "url": dg.MetadataValue.url(f"{record['url']}/api/v1.0/predictions"),
                "model_version": stable["version"],
                "released_as": config.role,
                "released_version": str(version),
                "previous_versions": dg.MetadataValue.json([h["version"] for h in record["history"]]),
                **({"feature_server_url": dg.MetadataValue.url(f"{stable['feature_server_url']}/get-online-features")}
                   if stable.get("feature_server_url") else {}),
                "deployment": dg.MetadataValue.json(summary),
                **({"live_comparison": dg.MetadataValue.json(live)} if live else {}),
            }
        )

    return deployment


def build_batch_predictions_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/deploy/batch_predictions``: a day's validated rows scored by the approved champion offline."""
    from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS

    keys = for_use_case(use_case)
    table = use_case.monitor_table("batch_predictions")

    @dg.asset(
        key=keys.batch_predictions,
        deps=[keys.champion, keys.validated, keys.feature_store],
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=use_case.name,
        kinds={"pytorch", "duckdb"},
        pool=WAREHOUSE_POOL,
        description=(
            f"Every valid row of the day scored by the approved champion, with the features training uses "
            f"(point in time, from Feast) and the served model's own preprocessing and forward pass: {table}."
        ),
    )
    @with_cost
    def batch_predictions(context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse,
                          mlflow_registry: MlflowRegistry, feast: FeatureStore) -> dg.MaterializeResult:
        """Scores the validated rows of the run's days; rewrites those days in the table."""
        from platform_assets.deploy.batch import score_rows
        from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
        from platform_assets.train.network import load_bundle
        from platform_assets.train.registry import download_bundle

        days = list(context.partition_keys)
        client = mlflow_registry.client()
        version = approved_champion(client, use_case.model_name)
        paths = state.paths.of(use_case.name)
        bundle = load_bundle(download_bundle(client, use_case.model_name, version, paths.serving / "models" / f"v{version}"))
        source = use_case.source
        where, params = partition_filter(days)
        with warehouse.connect(read_only=True) as con:
            rows = con.execute(f"SELECT * FROM {source.validated_table} WHERE {where}", params).df()
        scored = score_rows(rows, bundle, feast.store(), use_case, str(version), carry=(PARTITION_COLUMN,))
        warehouse.replace_partitions({table: scored}, PARTITION_COLUMN, days)
        return dg.MaterializeResult(metadata={
            "rows": len(scored), "validated_rows": len(rows), "model_version": str(version),
            "mean_probability": float(scored["probability"].mean()) if len(scored) else 0.0,
            "table": table,
        })

    @dg.asset_check(asset=keys.batch_predictions, blocking=True,
                    description="Every validated row of the day has one finite probability in [0, 1] (recounted now).")
    def every_row_scored_once(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        from platform_assets.defs.ingest.partitions import run_partition_keys
        from platform_assets.deploy.batch import scoring_gaps

        with warehouse.connect(read_only=True) as con:
            found = scoring_gaps(con, use_case.source, table, run_partition_keys(context))
        return dg.AssetCheckResult(passed=found["passed"], metadata={k: v for k, v in found.items() if k != "passed"})

    return batch_predictions, every_row_scored_once

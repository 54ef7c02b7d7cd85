"""The deployment asset: the champion served by Seldon Core's microservice beside the Feast feature server."""


import json
from pathlib import Path

import dagster as dg

from platform_assets.declarations import UseCase, use_case_to_dict
from platform_assets.declared import use_case_index
from platform_assets.resources import FeatureStore, MlflowRegistry, ModelServing, PlatformState

from platform_assets.keys import for_use_case


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


def build_deployment_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/deploy/deployment``: its champion served by the model server beside the Feast feature server."""
    keys = for_use_case(use_case)
    port_offset = use_case_index(use_case)

    @dg.asset(
        key=keys.deployment,
        deps=[keys.champion, keys.feature_store],
        group_name=use_case.name,
        kinds={"seldon", "pytorch", "feast"},
        description=(
            "The champion model served over REST by a Seldon Core microservice, and its features by the Feast "
            "feature server (both replaced on each deploy)."
        ),
    )
    def deployment(
        context: dg.AssetExecutionContext,
        state: PlatformState,
        mlflow_registry: MlflowRegistry,
        serving: ModelServing,
        feast: FeatureStore,
    ) -> dg.MaterializeResult:
        """Downloads the approved champion's bundle, (re)starts the model server on it and the feature server."""
        from platform_assets.deploy import feature_server
        from platform_assets.deploy import serving as server
        from platform_assets.train.registry import download_bundle

        paths = state.paths.of(use_case.name)
        client = mlflow_registry.client()
        name = use_case.model_name
        version = approved_champion(client, name)
        bundle_dir = download_bundle(client, name, version, paths.serving / "models" / f"v{version}")
        log_path = paths.serving / "server.log"
        # The model server reads online features from the feature server: its address is chosen first, never
        # the model server's own port (not bound yet, so the system may offer it as a free one).
        http_port = serving.http_port + port_offset
        feature_port = server.free_port()
        while feature_port == http_port:
            feature_port = server.free_port()
        process = server.start_model_server(
            python=serving.python_path(),
            model_dir=bundle_dir,
            use_case=use_case.name,
            declaration=use_case_to_dict(use_case),
            model_name=name,
            model_version=version,
            http_port=http_port,
            host=serving.host,
            log_path=log_path,
            record_path=serving.pid_path(paths),
            feature_server_url=f"http://127.0.0.1:{feature_port}",
            inference_log_dir=paths.inference,
            workers=serving.workers,
            feature_lookup_timeout_s=serving.feature_lookup_timeout_s,
        )
        # The feature server lives as long as the model server it feeds (it watches its pid).
        features = feature_server.start_feature_server(
            repo_path=Path(feast.repo_path),
            state_root=Path(feast.state_root),
            log_path=paths.serving / "feature_server.log",
            record_path=paths.serving / "feature_server.json",
            port=feature_port,
            watch_pid=process.pid,
        )
        waited = server.wait_until_healthy(process, timeout_s=serving.start_timeout_s)
        features_waited = feature_server.wait_until_ready(features, timeout_s=serving.start_timeout_s)
        record = {"url": process.url, "model_name": name, "model_version": version, "pid": process.pid,
                  "bundle": str(bundle_dir), "feature_server_url": features.url, "feature_server_pid": features.pid,
                  "inference_log_dir": str(paths.inference)}
        (paths.serving / "deployment.json").write_text(json.dumps(record, indent=2))
        context.log.info(
            f"serving {name} v{version} at {process.url} (healthy after {waited:.1f} s), "
            f"features at {features.url} (ready after {features_waited:.1f} s)"
        )
        return dg.MaterializeResult(
            metadata={
                "url": dg.MetadataValue.url(f"{process.url}/api/v1.0/predictions"),
                "model_version": version,
                "pid": process.pid,
                "seconds_to_healthy": waited,
                "log": dg.MetadataValue.path(str(log_path)),
                "feature_server_url": dg.MetadataValue.url(f"{features.url}/get-online-features"),
                "feature_server_pid": features.pid,
                "deployment": dg.MetadataValue.json(record),
            }
        )

    return deployment

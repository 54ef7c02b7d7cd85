"""Checks on the deployment: served predictions equal the offline ones, served features the SDK's."""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.defs.deploy.assets import latest_deployment
from platform_assets.keys import for_use_case
from platform_assets.resources import FeatureStore, PlatformState


class ServedCheckConfig(dg.Config):
    """How many test rows are sent to the server and how close the answers must be."""

    rows: int = 200
    tolerance: float = 1e-5


class ServedFeaturesConfig(dg.Config):
    """How many recent rows' online entities the feature server is asked about."""

    entities: int = 100


def build_deployment_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of ``<use case>/deploy/deployment``."""
    keys = for_use_case(use_case)

    @dg.asset_check(
        asset=keys.deployment,
        blocking=True,
        description="Predictions served over HTTP equal the offline predictions of the same bundle (1e-5).",
    )
    def served_predictions_match_offline(
        context: dg.AssetCheckExecutionContext, config: ServedCheckConfig, state: PlatformState
    ) -> dg.AssetCheckResult:
        """Sends test rows to the server and compares with the bundle's own predictions."""
        import numpy as np
        import pandas as pd

        from platform_assets.deploy.serving import predict_over_http
        from platform_assets.train.network import load_bundle

        record = latest_deployment(context.instance, keys.deployment)
        bundle = load_bundle(record["bundle"])
        test = pd.read_parquet(state.paths.of(use_case.name).training_set).query("split == 'test'").head(config.rows)
        rows = test[bundle.preprocessor.input_names].to_dict("records")
        # Straight to the serving version, marked as the platform's own traffic: a check's requests never
        # land in the production inference log (the router would drop the mark from a caller).
        served, meta = predict_over_http(record.get("backend_url") or record["url"], rows, platform_traffic="smoke")
        offline = bundle.predict_proba(test)
        max_diff = float(np.max(np.abs(np.asarray(served) - offline))) if len(rows) else 0.0
        version = meta.get("tags", {}).get("model_version")
        return dg.AssetCheckResult(
            passed=len(served) == len(rows) and max_diff <= config.tolerance and version == record["model_version"],
            metadata={"rows": len(rows), "max_abs_difference": max_diff, "served_model_version": str(version)},
        )


    @dg.asset_check(
        asset=keys.deployment,
        blocking=True,
        description="Features fetched from the feature server over HTTP equal those of the Feast SDK, exactly.",
    )
    def served_features_match_sdk(
        context: dg.AssetCheckExecutionContext, config: ServedFeaturesConfig, feast: FeatureStore
    ) -> dg.AssetCheckResult:
        """Asks the feature server and the SDK about the same entities and compares every value.

        These are the values the model server reads for each request (the use case's online feature service).
        """
        import pandas as pd

        from platform_assets.deploy.feature_server import differing_values, online_features_over_http
        from platform_assets.features.feast_ops import latest_offline_rows

        record = latest_deployment(context.instance, keys.deployment)
        store = feast.store()
        sampled = next(iter(latest_offline_rows(store, use_case, config.entities).values()))
        join_keys = [c for c in sampled.columns if c in {k for v in store.get_feature_service(
            use_case.online_feature_service).feature_view_projections for k in
            [e.name for e in store.get_feature_view(v.name).entity_columns]}]
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(join_keys, r)}
                for r in sampled[join_keys].itertuples(index=False)]
        entities = {k: [r[k] for r in rows] for k in join_keys}
        served = online_features_over_http(record["feature_server_url"], use_case.online_feature_service, entities)
        service = store.get_feature_service(use_case.online_feature_service)
        sdk = pd.DataFrame(store.get_online_features(features=service, entity_rows=rows).to_dict())
        differing = differing_values(served, sdk)
        return dg.AssetCheckResult(
            passed=differing == 0 and len(sdk) == len(rows),
            metadata={"entities": len(rows), "served_rows": len(served), "sdk_rows": len(sdk),
                      "differing_values": -1 if differing is None else differing,
                      "same_columns": set(served.columns) == set(sdk.columns)},
        )

    # Built only for a use case whose server reads online features: otherwise there is nothing to compare.
    return [served_predictions_match_offline, *([served_features_match_sdk] if use_case.online_feature_service else [])]

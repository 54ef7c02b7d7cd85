"""Checks on the deployment: served predictions equal the offline ones, served features the SDK's."""


import json

import dagster as dg

from platform_assets.deploy.assets import DEPLOYMENT
from platform_assets.resources import FeatureStore, PlatformState


class ServedCheckConfig(dg.Config):
    """How many test rows are sent to the server and how close the answers must be."""

    rows: int = 200
    tolerance: float = 1e-5


@dg.asset_check(
    asset=DEPLOYMENT,
    blocking=True,
    description="Predictions served over HTTP equal the offline predictions of the same bundle (1e-5).",
)
def served_predictions_match_offline(config: ServedCheckConfig, state: PlatformState) -> dg.AssetCheckResult:
    """Sends test rows to the server and compares with the bundle's own predictions."""
    import numpy as np
    import pandas as pd

    from platform_assets.deploy.serving import predict_over_http
    from platform_assets.train.network import load_bundle

    record = json.loads((state.paths.serving / "deployment.json").read_text())
    bundle = load_bundle(record["bundle"])
    test = pd.read_parquet(state.paths.training_set).query("split == 'test'").head(config.rows)
    rows = test[bundle.preprocessor.input_names].to_dict("records")
    served, meta = predict_over_http(record["url"], rows)
    offline = bundle.predict_proba(test)
    max_diff = float(np.max(np.abs(np.asarray(served) - offline))) if len(rows) else 0.0
    version = meta.get("tags", {}).get("model_version")
    return dg.AssetCheckResult(
        passed=len(served) == len(rows) and max_diff <= config.tolerance and version == record["model_version"],
        metadata={"rows": len(rows), "max_abs_difference": max_diff, "served_model_version": str(version)},
    )


class ServedFeaturesConfig(dg.Config):
    """How many recent applications' applicants the feature server is asked about."""

    entities: int = 100


@dg.asset_check(
    asset=DEPLOYMENT,
    blocking=True,
    description="Features fetched from the feature server over HTTP equal those of the Feast SDK, exactly.",
)
def served_features_match_sdk(
    config: ServedFeaturesConfig, state: PlatformState, feast: FeatureStore
) -> dg.AssetCheckResult:
    """Asks the feature server and the SDK about the same applicants and compares every value.

    These are the lists the model server reads for each request (``loan_default_online``).
    """
    import pandas as pd

    from platform_assets.deploy.feature_server import online_features_over_http
    from platform_assets.features.names import ONLINE_FEATURE_SERVICE

    record = json.loads((state.paths.serving / "deployment.json").read_text())
    apps = pd.read_parquet(state.paths.feast / "data" / "fct_application_features.parquet").tail(config.entities)
    entities = {"applicant_id": sorted(set(apps["applicant_id"].astype(int).tolist()))}
    served = online_features_over_http(record["feature_server_url"], ONLINE_FEATURE_SERVICE, entities)
    store = feast.store()
    rows = [{"applicant_id": a} for a in entities["applicant_id"]]
    service = store.get_feature_service(ONLINE_FEATURE_SERVICE)
    sdk = pd.DataFrame(store.get_online_features(features=service, entity_rows=rows).to_dict())
    same_columns = set(served.columns) == set(sdk.columns)
    differing = 0
    if same_columns and len(served) == len(sdk):
        served = served[sdk.columns]
        differing = int((~((served == sdk) | (served.isna() & sdk.isna()))).to_numpy().sum())
    return dg.AssetCheckResult(
        passed=same_columns and len(served) == len(sdk) == len(rows) and differing == 0,
        metadata={"entities": len(rows), "differing_values": differing, "same_columns": same_columns},
    )

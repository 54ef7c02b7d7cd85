"""Checks on the deployment: the served predictions equal the offline ones."""


import json

import dagster as dg

from platform_assets.deploy.assets import DEPLOYMENT
from platform_assets.resources import PlatformState


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

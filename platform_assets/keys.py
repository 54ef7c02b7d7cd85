"""Every asset key of the platform, in one place (no heavy imports: sensors and automation read them)."""

import dagster as dg

RAW_APPLICATIONS = dg.AssetKey(["raw", "applications"])
VALIDATED_APPLICATIONS = dg.AssetKey(["validated", "applications"])
QUARANTINED_APPLICATIONS = dg.AssetKey(["quarantine", "applications"])
FEATURE_STORE = dg.AssetKey(["features", "feature_store"])
TRAINING_SET = dg.AssetKey(["features", "training_set"])
MODEL = dg.AssetKey(["train", "model"])
EVAL_REPORT = dg.AssetKey(["evaluate", "eval_report"])
CHAMPION_ALIAS = dg.AssetKey(["evaluate", "champion"])
DEPLOYMENT = dg.AssetKey(["deploy", "deployment"])
INFERENCE_LOG = dg.AssetKey(["monitor", "inference_log"])
LABELLED_PREDICTIONS = dg.AssetKey(["monitor", "labelled_predictions"])
OUTCOMES = dg.AssetKey(["monitor", "outcomes"])
DRIFT_REPORT = dg.AssetKey(["monitor", "drift_report"])


def feature_key(name: str) -> dg.AssetKey:
    """The key of a dbt model (or mart) of the feature layer."""
    return dg.AssetKey(["features", name])

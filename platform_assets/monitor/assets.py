"""The inference log (served predictions with their model version) and the drift report."""


import datetime as dt
import json

import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.deploy.assets import DEPLOYMENT
from platform_assets.features.assets import TRAINING_SET
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.train.assets import NON_FEATURES

INFERENCE_LOG = dg.AssetKey(["monitor", "inference_log"])
DRIFT_REPORT = dg.AssetKey(["monitor", "drift_report"])


class InferenceConfig(dg.Config):
    """Which recent applications are scored through the served model."""

    recent_days: int = 7
    batch_size: int = 500


@dg.asset(
    key=INFERENCE_LOG,
    deps=[DEPLOYMENT],
    group_name="monitor",
    kinds={"duckdb", "seldon", "feast"},
    description="Recent applications scored by the served model: online features, probability, model version.",
    pool=WAREHOUSE_POOL,
)
def inference_log(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    state: PlatformState,
    warehouse: Warehouse,
    feast: FeatureStore,
) -> dg.MaterializeResult:
    """Fetches online features for recent applications, asks the server, and appends to the log."""
    import pandas as pd

    from platform_assets.deploy.feature_server import online_features_over_http
    from platform_assets.deploy.serving import predict_over_http
    from platform_assets.features.names import FEATURE_SERVICE

    deployment = json.loads((state.paths.serving / "deployment.json").read_text())
    with warehouse.connect(read_only=True) as con:
        recent = con.execute(
            "SELECT application_id, applicant_id, application_ts FROM validated.applications "
            "WHERE application_ts > (SELECT max(application_ts) FROM validated.applications) - to_days(?) "
            "ORDER BY application_ts, application_id",
            [config.recent_days],
        ).df()
    if deployment.get("feature_server_url"):
        # As the model's callers would: features by entity id from the deployed feature server.
        entities = {"application_id": recent["application_id"].tolist(),
                    "applicant_id": recent["applicant_id"].astype(int).tolist()}
        online = online_features_over_http(deployment["feature_server_url"], FEATURE_SERVICE, entities)
    else:  # a deployment recorded before the feature server existed
        store = feast.store()
        keys = recent[["application_id", "applicant_id"]].to_dict("records")
        online = pd.DataFrame(
            store.get_online_features(features=store.get_feature_service(FEATURE_SERVICE), entity_rows=keys).to_dict()
        )
    features = [c for c in online.columns if c not in NON_FEATURES]
    probabilities, versions = [], []
    for start in range(0, len(online), config.batch_size):
        batch = online.iloc[start : start + config.batch_size]
        served, meta = predict_over_http(deployment["url"], batch[features].to_dict("records"))
        probabilities += served
        versions += [str(meta.get("tags", {}).get("model_version"))] * len(served)
    log = online.assign(
        application_ts=recent["application_ts"].to_numpy(),
        probability_of_default=probabilities,
        model_name=deployment["model_name"],
        model_version=versions,
        dagster_run_id=context.run.run_id,
        logged_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    )
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS monitor")
        con.execute("CREATE TABLE IF NOT EXISTS monitor.inference_log AS SELECT * FROM log LIMIT 0")
        con.execute("INSERT INTO monitor.inference_log BY NAME SELECT * FROM log")
        total = con.execute("SELECT count(*) FROM monitor.inference_log").fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "rows_this_run": len(log),
            "model_version": deployment["model_version"],
            "mean_probability_of_default": float(log["probability_of_default"].mean()) if len(log) else 0.0,
        }
    )


class DriftConfig(dg.Config):
    """Sampling of the drift report."""

    max_rows: int = 20_000
    seed: int = 0


@dg.asset(
    key=DRIFT_REPORT,
    deps=[INFERENCE_LOG, TRAINING_SET],
    group_name="monitor",
    kinds={"evidently", "html"},
    description="Evidently data-drift report: the latest served inputs against the training split.",
    pool=WAREHOUSE_POOL,
)
def drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, state: PlatformState, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Compares the inputs of the latest inference run with the model's training data."""
    import pandas as pd

    from platform_assets.monitor.drift import drift_report as run_drift_report

    training = pd.read_parquet(state.paths.training_set)
    reference = training[training["split"] == "train"]
    with warehouse.connect(read_only=True) as con:
        current = con.execute(
            "SELECT * FROM monitor.inference_log WHERE dagster_run_id = "
            "(SELECT dagster_run_id FROM monitor.inference_log ORDER BY logged_at DESC LIMIT 1)"
        ).df()
    columns = [c for c in reference.columns if c not in NON_FEATURES]
    html = state.paths.reports / "drift" / "drift_report.html"
    summary = run_drift_report(reference, current, columns, html, config.max_rows, config.seed)
    html.with_suffix(".json").write_text(json.dumps(summary.__dict__, indent=2))
    context.log.info(f"{summary.drifted_columns}/{summary.columns} columns drifted: {summary.drifted}")
    return dg.MaterializeResult(
        metadata={
            "drifted_columns": summary.drifted_columns,
            "drift_share": summary.drift_share,
            "drifted": ", ".join(summary.drifted) or "none",
            "reference_rows": summary.reference_rows,
            "current_rows": summary.current_rows,
            "report": dg.MetadataValue.path(str(html)),
        }
    )

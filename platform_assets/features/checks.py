"""Checks on the features: no training/serving skew, no label leakage, fresh features."""


import dagster as dg
from platform_assets.features.names import HISTORY_FEATURES
from platform_assets.features.assets import FEATURE_STORE, TRAINING_SET
from platform_assets.resources import FeatureStore, PlatformState, Warehouse


class SkewCheckConfig(dg.Config):
    """How many entities the skew check compares."""

    sample_size: int = 50
    seed: int = 0


@dg.asset_check(
    asset=FEATURE_STORE,
    blocking=True,
    description=(
        "The online store serves each sampled applicant's latest offline activity exactly (a stale or "
        "half-materialized online store fails)."
    ),
)
def online_matches_offline(
    config: SkewCheckConfig, state: PlatformState, feast: FeatureStore
) -> dg.AssetCheckResult:
    """Reads a sample of applicants from the online store and compares their activity lists exactly.

    Whether the server's features then equal the point-in-time training features
    is checked on what it actually served (``monitor/inference_log``).
    """
    from platform_assets.features import feast_ops

    store = feast.store()
    expected = feast_ops.latest_offline_activity(state.paths.feast / "data", config.sample_size, config.seed)
    mismatches = feast_ops.online_activity_mismatches(store, expected)
    return dg.AssetCheckResult(
        passed=mismatches.empty and len(expected) > 0,
        metadata={
            "applicants_compared": len(expected),
            "mismatches": len(mismatches),
            "examples": dg.MetadataValue.md(mismatches.head(10).to_markdown(index=False) if len(mismatches) else "none"),
        },
    )


@dg.asset_check(
    asset=TRAINING_SET,
    blocking=True,
    description="Point-in-time correct: features as of each application, labels known, splits in time order.",
)
def training_set_has_no_leakage(state: PlatformState, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Recomputes what each row may know and compares it with what the training set holds."""
    import pandas as pd

    from platform_assets.features.feast_ops import leakage_findings

    training = pd.read_parquet(state.paths.training_set)
    with warehouse.connect(read_only=True) as con:
        history = con.execute(
            f"SELECT application_id, {', '.join(HISTORY_FEATURES)} FROM features.fct_applicant_history"
        ).df()
        as_of = con.execute("SELECT max(application_ts) FROM validated.applications").fetchone()[0]
    findings = leakage_findings(training, history, pd.Timestamp(as_of, tz="UTC"))
    return dg.AssetCheckResult(passed=not any(findings.values()), metadata=findings)


class FeatureFreshnessConfig(dg.Config):
    """How far the features may lag behind the validated data, and the online store behind them."""

    max_feature_lag_hours: float = 24.0
    max_online_lag_hours: float = 0.0


@dg.asset_check(
    asset=FEATURE_STORE,
    description="Features keep up with the validated data and the online store holds the newest features.",
)
def features_are_fresh(
    config: FeatureFreshnessConfig, state: PlatformState, warehouse: Warehouse, feast: FeatureStore
) -> dg.AssetCheckResult:
    """Warns when the newest feature is older than the newest application, or not yet online."""
    import datetime as dt

    import duckdb

    from platform_assets.features import feast_ops

    exported = state.paths.feast / "data" / "fct_application_features.parquet"
    with warehouse.connect(read_only=True) as con:
        newest_source = con.execute("SELECT max(application_ts) FROM validated.applications").fetchone()[0]
    with duckdb.connect() as con:
        newest_features = con.execute(f"SELECT max(event_timestamp) FROM read_parquet('{exported}')").fetchone()[0]
    until = feast_ops.materialized_until(feast.store())
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    found = feast_ops.freshness_findings(newest_source, newest_features, until, now)
    passed = (
        found["feature_lag_hours"] is not None
        and found["feature_lag_hours"] <= config.max_feature_lag_hours
        and found["online_lag_hours"] is not None
        and found["online_lag_hours"] <= config.max_online_lag_hours
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **{k: (round(v, 3) if v is not None else "n/a") for k, v in found.items()},
            "newest_feature": str(newest_features),
            "online_until": dg.MetadataValue.json({k: str(v) for k, v in until.items()}),
        },
    )

"""Checks on monitoring: every served prediction is logged with its model, drift stays low."""


import json

import dagster as dg

from platform_assets.monitor.assets import DRIFT_REPORT, INFERENCE_LOG
from platform_assets.resources import PlatformState, Warehouse


@dg.asset_check(asset=INFERENCE_LOG, description="Every logged prediction has a model version and a probability in [0, 1].")
def predictions_carry_model_version(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Looks for log rows without lineage or with an impossible probability."""
    with warehouse.connect(read_only=True) as con:
        total, bad = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE model_version IS NULL OR model_version = 'None' "
            "OR probability_of_default NOT BETWEEN 0 AND 1) FROM monitor.inference_log"
        ).fetchone()
    return dg.AssetCheckResult(passed=bad == 0 and total > 0, metadata={"rows": total, "rows_without_lineage": bad})


class DriftThresholdConfig(dg.Config):
    """The share of drifted columns above which the check warns."""

    max_drift_share: float = 0.3


@dg.asset_check(asset=DRIFT_REPORT, description="The share of drifted feature columns is under the threshold.")
def drift_share_under_threshold(config: DriftThresholdConfig, state: PlatformState) -> dg.AssetCheckResult:
    """Warns (does not block) when too many inputs drifted: a signal to retrain."""
    summary = json.loads((state.paths.reports / "drift" / "drift_report.json").read_text())
    return dg.AssetCheckResult(
        passed=summary["drift_share"] <= config.max_drift_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"drift_share": summary["drift_share"], "drifted": ", ".join(summary["drifted"]) or "none"},
    )

"""The gate as a blocking check: a rejected challenger stops deployment in the same run."""


import json

import dagster as dg

from platform_assets.evaluate.assets import EVAL_REPORT, report_path
from platform_assets.resources import PlatformState


@dg.asset_check(
    asset=EVAL_REPORT,
    blocking=True,
    description="The challenger passed the gate (quality floor, no regression, fairness bounds).",
)
def eval_gate_passed(state: PlatformState) -> dg.AssetCheckResult:
    """Reads the gate decision of the latest evaluation report."""
    report = json.loads(report_path(state).read_text())
    return dg.AssetCheckResult(
        passed=bool(report["passed"]),
        metadata={"model_version": report["challenger_version"], "reasons": "\n".join(report["reasons"])},
    )

"""The evaluation report: challenger vs champion on one test set, and the gate decision."""


import json

import dagster as dg

from platform_assets.domain import LABEL, PROTECTED_ATTRIBUTE
from platform_assets.features.assets import TRAINING_SET
from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.train.assets import MODEL

EVAL_REPORT = dg.AssetKey(["evaluate", "eval_report"])


class GateConfig(dg.Config):
    """The rules a challenger must meet to become champion."""

    threshold: float = 0.5
    min_roc_auc: float = 0.75
    tolerance: float = 0.005
    max_demographic_parity_difference: float = 0.3
    max_equal_opportunity_difference: float = 0.3


def report_path(state: PlatformState):
    """Where the latest evaluation report (JSON) is written."""
    return state.paths.reports / "eval" / "eval_report.json"


def render_markdown(report: dict) -> str:
    """A short human-readable report: decision, reasons, metrics, fairness slices."""
    import pandas as pd

    lines = [
        f"# Evaluation of model version {report['challenger_version']}",
        "",
        f"**Gate: {'PASSED' if report['passed'] else 'FAILED'}** "
        f"(champion before: {report['champion_version'] or 'none'})",
        "",
        *[f"- {r}" for r in report["reasons"]],
        "",
        "## Test metrics",
        "",
        pd.DataFrame(
            {k: v["metrics"] for k, v in report["models"].items()}
        ).to_markdown(floatfmt=".4f"),
        "",
        f"## Fairness slices of the challenger ({PROTECTED_ATTRIBUTE})",
        "",
        pd.DataFrame(report["models"]["challenger"]["fairness"]["slices"]).T[
            ["rows", "roc_auc", "positive_rate", "true_positive_rate"]
        ].to_markdown(floatfmt=".4f"),
    ]
    return "\n".join(lines) + "\n"


@dg.asset(
    key=EVAL_REPORT,
    deps=[MODEL, TRAINING_SET],
    group_name="evaluate",
    kinds={"pytorch", "mlflow"},
    description="Challenger and champion scored on the same test split, fairness slices and the gate decision.",
)
def eval_report(
    context: dg.AssetExecutionContext, config: GateConfig, state: PlatformState, mlflow_registry: MlflowRegistry
) -> dg.MaterializeResult:
    """Scores both models, decides, and moves the ``champion`` alias only if the gate passed."""
    import pandas as pd

    from platform_assets.evaluate import metrics
    from platform_assets.train.registry import CHALLENGER, CHAMPION, GATE_TAG, alias_version, load_version

    client = mlflow_registry.client()
    name = mlflow_registry.registered_model_name
    challenger_version = alias_version(client, name, CHALLENGER)
    if challenger_version is None:
        raise dg.Failure(f"registered model {name!r} has no {CHALLENGER!r} alias; materialize the model first")
    champion_version = alias_version(client, name, CHAMPION)
    if champion_version == challenger_version:
        champion_version = None

    df = pd.read_parquet(state.paths.training_set)
    test = df[df["split"] == "test"]
    y = test[LABEL].to_numpy()
    workdir = state.paths.reports / "eval" / "models"
    models = {}
    for role, version in (("challenger", challenger_version), ("champion", champion_version)):
        if version is None:
            continue
        p = load_version(client, name, version, workdir).predict_proba(test)
        models[role] = {
            "version": version,
            "metrics": metrics.score(y, p, config.threshold),
            "fairness": metrics.fairness(y, p, test[PROTECTED_ATTRIBUTE].to_numpy(), config.threshold),
        }
    decision = metrics.decide(
        models["challenger"],
        models.get("champion"),
        min_roc_auc=config.min_roc_auc,
        tolerance=config.tolerance,
        max_demographic_parity_difference=config.max_demographic_parity_difference,
        max_equal_opportunity_difference=config.max_equal_opportunity_difference,
    )
    client.set_model_version_tag(name, challenger_version, GATE_TAG, "passed" if decision.passed else "failed")
    if decision.passed:
        client.set_registered_model_alias(name, CHAMPION, challenger_version)
    report = {
        "challenger_version": challenger_version,
        "champion_version": champion_version,
        "passed": decision.passed,
        "reasons": decision.reasons,
        "test_rows": int(len(test)),
        "models": models,
    }
    path = report_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    markdown = render_markdown(report)
    path.with_suffix(".md").write_text(markdown)
    context.log.info("\n".join(decision.reasons))
    challenger_metrics = models["challenger"]["metrics"]
    return dg.MaterializeResult(
        metadata={
            "challenger_version": challenger_version,
            "champion_version": champion_version or "none",
            "gate_passed": decision.passed,
            "test_roc_auc": challenger_metrics["roc_auc"],
            "test_pr_auc": challenger_metrics["pr_auc"],
            "report": dg.MetadataValue.md(markdown),
            "report_path": dg.MetadataValue.path(str(path.with_suffix(".md"))),
        }
    )

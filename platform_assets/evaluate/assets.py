"""The evaluation report: challenger vs champion on one test set, and the gate decision."""


import json

import dagster as dg

from platform_assets.domain import LABEL, PROTECTED_ATTRIBUTE
from platform_assets.features.assets import TRAINING_SET
from platform_assets.resources import MlflowRegistry, PlatformState
from platform_assets.train.assets import MODEL

EVAL_REPORT = dg.AssetKey(["evaluate", "eval_report"])


class GateConfig(dg.Config):
    """The rules a challenger must meet to become champion, and how it is scored."""

    threshold: float = 0.5
    min_roc_auc: float = 0.75
    tolerance: float = 0.005
    brier_tolerance: float = 0.01
    max_demographic_parity_difference: float = 0.3
    max_equal_opportunity_difference: float = 0.3
    # A group's positive rate counts toward the parity gap from this many test rows, its true positive
    # rate toward the opportunity gap from this many positives (smaller groups: reported, not judged).
    min_group_rows: int = 100
    min_group_positives: int = 30
    calibration_bins: int = 10
    importance_repeats: int = 3
    importance_seed: int = 0


def report_path(state: PlatformState):
    """Where the latest evaluation report (JSON) is written."""
    return state.paths.reports / "eval" / "eval_report.json"


def score_model(bundle, test, config: GateConfig, importance: bool) -> tuple[dict, "numpy.ndarray"]:  # noqa: F821
    """Metrics, fairness slices, calibration and (optionally) permutation importance of one model.

    Returns:
        The scores and the model's probabilities on ``test``.
    """
    from platform_assets.evaluate import metrics

    y = test[LABEL].to_numpy()
    p = bundle.predict_proba(test)
    scored = {
        "metrics": metrics.score(y, p, config.threshold),
        "fairness": metrics.fairness(y, p, test[PROTECTED_ATTRIBUTE].to_numpy(), config.threshold,
                                     config.min_group_rows, config.min_group_positives),
        "calibration": metrics.calibration_table(y, p, config.calibration_bins),
    }
    if importance:
        scored["permutation_importance"] = metrics.permutation_importance(
            bundle.predict_proba, test, y, bundle.preprocessor.input_names,
            repeats=config.importance_repeats, seed=config.importance_seed,
        )
    return scored, p


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

    from platform_assets.evaluate import metrics, plots
    from platform_assets.evaluate.report import render_markdown
    from platform_assets.train.registry import CHALLENGER, CHAMPION, GATE_TAG, alias_version, load_version

    client = mlflow_registry.client()
    name = mlflow_registry.registered_model_name
    challenger_version = alias_version(client, name, CHALLENGER)
    if challenger_version is None:
        raise dg.Failure(f"registered model {name!r} has no {CHALLENGER!r} alias; materialize the model first")
    # An orphan (see train.registration) has no trustworthy lineage: never gate it, even if aliased by hand.
    if client.get_model_version(name, challenger_version).tags.get("orphaned") == "true":
        raise dg.Failure(
            f"{name} version {challenger_version} is orphaned (see its orphaned_reason tag); materialize the model first"
        )
    champion_version = alias_version(client, name, CHAMPION)
    if champion_version == challenger_version:
        champion_version = None

    df = pd.read_parquet(state.paths.training_set)
    test = df[df["split"] == "test"]
    y = test[LABEL].to_numpy()
    out_dir = report_path(state).parent
    models, probabilities = {}, {}
    for role, version in (("challenger", challenger_version), ("champion", champion_version)):
        if version is None:
            continue
        bundle = load_version(client, name, version, out_dir / "models")
        models[role], probabilities[f"{role} v{version}"] = score_model(bundle, test, config, role == "challenger")
        models[role]["version"] = version
    decision = metrics.decide(
        models["challenger"],
        models.get("champion"),
        min_roc_auc=config.min_roc_auc,
        tolerance=config.tolerance,
        brier_tolerance=config.brier_tolerance,
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
        "threshold": config.threshold,
        "test_rows": int(len(test)),
        "models": models,
    }
    path = report_path(state)
    path.write_text(json.dumps(report, indent=2))
    roc = plots.roc_plot({k: (y, p) for k, p in probabilities.items()}, out_dir / "roc.png")
    calibration = plots.calibration_plot(
        {f"{role} v{m['version']}": m["calibration"] for role, m in models.items()}, out_dir / "calibration.png"
    )
    markdown_path = path.with_suffix(".md")
    markdown_path.write_text(render_markdown(report, {"ROC": roc.name, "Calibration": calibration.name}))
    run_id = client.get_model_version(name, challenger_version).run_id
    for metric, value in models["challenger"]["metrics"].items():
        client.log_metric(run_id, f"test_{metric}", float(value))
    for artifact in (path, markdown_path, roc, calibration):
        client.log_artifact(run_id, str(artifact), artifact_path="eval")
    context.log.info("\n".join(decision.reasons))
    challenger_metrics = models["challenger"]["metrics"]
    return dg.MaterializeResult(
        metadata={
            "challenger_version": challenger_version,
            "champion_version": champion_version or "none",
            "gate_passed": decision.passed,
            "gate_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
            "test_roc_auc": challenger_metrics["roc_auc"],
            "test_pr_auc": challenger_metrics["pr_auc"],
            "test_brier": challenger_metrics["brier"],
            "demographic_parity_difference": models["challenger"]["fairness"]["demographic_parity_difference"],
            "equal_opportunity_difference": models["challenger"]["fairness"]["equal_opportunity_difference"],
            # Markdown metadata is rendered in the UI, images included when inlined as data: URIs.
            "report": dg.MetadataValue.md(
                render_markdown(report, {"ROC": plots.data_uri(roc), "Calibration": plots.data_uri(calibration)})
            ),
            "report_path": dg.MetadataValue.path(str(markdown_path)),
            "roc_plot": dg.MetadataValue.path(str(roc)),
            "calibration_plot": dg.MetadataValue.path(str(calibration)),
        }
    )

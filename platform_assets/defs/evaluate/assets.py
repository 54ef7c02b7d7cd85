"""The evaluation: challenger and champion scored on one test set; the champion alias after the gate.

The report measures; the blocking check ``eval_gate_passed`` (evaluate/checks.py) judges the
report's own materialization against the gate's bounds and the rollback rule; ``evaluate/champion``
moves the alias only for a version whose gate passed on its latest evaluation and that was not
rolled back since (nor its weights, under another version number).
"""


import json

import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.resources import MlflowRegistry, PlatformState

from platform_assets.keys import for_use_case
from platform_assets.cost import with_cost
# The tag on a model version naming the evaluation (its run id) the gate's verdict is about.
GATE_EVALUATION_TAG = "gate_evaluation"


class EvaluationConfig(dg.Config):
    """How models are scored (the bounds they must meet are the gate check's, see evaluate/checks.py)."""

    threshold: float = 0.5
    # A group's positive rate counts toward the parity gap from this many test rows, its true positive
    # rate toward the opportunity gap from this many positives (smaller groups: reported, not judged).
    min_group_rows: int = 100
    min_group_positives: int = 30
    calibration_bins: int = 10
    importance_repeats: int = 3
    importance_seed: int = 0
    # Both models are scored on the same random sample of the test split when it holds more rows than this
    # (its size and the split's are recorded): an AUC's standard error at 200,000 rows is about 0.001.
    max_test_rows: int = 200_000
    sample_seed: int = 0


def _gap_metadata(gap: float | None) -> dg.MetadataValue:
    """A fairness gap as metadata: the figure, or "not judged" (fewer than two groups large enough), never 0."""
    from platform_assets.evaluate.report import NOT_JUDGED

    return dg.MetadataValue.text(NOT_JUDGED) if gap is None else dg.MetadataValue.float(gap)


def report_path(state: PlatformState, use_case: UseCase):
    """Where the latest evaluation report (JSON, for people and MLflow; nothing reads it back) is written."""
    return state.paths.of(use_case.name).reports / "eval" / "eval_report.json"


def latest_evaluation(instance: dg.DagsterInstance, eval_report: dg.AssetKey) -> tuple[dict, str] | None:
    """The scores the latest ``eval_report`` materialization recorded, and its run id (``None``: never evaluated)."""
    event = instance.get_latest_materialization_event(eval_report)
    if event is None or "evaluation" not in event.asset_materialization.metadata:
        return None
    return event.asset_materialization.metadata["evaluation"].value, event.run_id


GATE_CHECK = "eval_gate_passed"


def gate_verdict(instance: dg.DagsterInstance, eval_report: dg.AssetKey, version: str,
                 evaluation_run: str | None = None, history: int = 200) -> str:
    """The gate check's verdict on ``version``, from Dagster's own record of the check's evaluations:
    ``passed`` or ``failed`` (the newest judgement of it on ``evaluation_run``, or on any evaluation when
    ``None``), ``missing`` when the check never judged it. MLflow tags, which anyone can edit, are not read.
    """
    key = dg.AssetCheckKey(eval_report, GATE_CHECK)
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=history):
        event = record.event.dagster_event if record.event is not None else None
        judged = event.event_specific_data if event is not None else None
        if not isinstance(judged, dg.AssetCheckEvaluation):
            continue  # planned, never evaluated
        metadata = {k: getattr(v, "value", v) for k, v in judged.metadata.items()}
        if str(metadata.get("model_version")) == str(version) and (
                evaluation_run is None or metadata.get("evaluation_run") == evaluation_run):
            return "passed" if judged.passed else "failed"
    return "missing"


def rollback_refusals(client, use_case: UseCase, version: str, evaluation: dict | None) -> list[str]:
    """Why ``version`` may not become champion under the rollback rule (:mod:`platform_assets.evaluate.rollbacks`).

    Its weights are known by the hash the evaluation recomputed from the stored weights file (when
    ``evaluation`` scored this version as challenger) and by the ``weights_sha256`` training tagged it with.
    """
    from platform_assets.evaluate.rollbacks import rollback_reasons
    from platform_assets.train.registration import WEIGHTS_TAG
    from platform_assets.train.registry import rolled_back_versions

    name = use_case.model_name
    rolled_back = rolled_back_versions(client, name)
    if not rolled_back:
        return []
    scored = (evaluation or {}).get("models", {}).get("challenger", {})
    rehashed = scored.get("weights_sha256") if str(scored.get("version")) == str(version) else None
    tagged = client.get_model_version(name, version).tags.get(WEIGHTS_TAG)
    return rollback_reasons(version, [rehashed, tagged], rolled_back, use_case.name)


def build_evaluation_assets(use_case: UseCase) -> list[dg.AssetsDefinition]:
    """``<use case>/evaluate/eval_report`` (the scores) and ``<use case>/evaluate/champion`` (the registry alias)."""
    keys = for_use_case(use_case)

    @dg.asset(
        key=keys.eval_report,
        deps=[keys.model, keys.training_set],
        group_name=use_case.name,
        kinds={"pytorch", "mlflow"},
        description="Challenger and champion scored on the same test split: metrics, calibration, fairness slices.",
    )
    @with_cost
    def eval_report(
        context: dg.AssetExecutionContext, config: EvaluationConfig, state: PlatformState, mlflow_registry: MlflowRegistry
    ) -> dg.MaterializeResult:
        """Scores both models on the test split; the gate check judges the scores recorded here."""
        from platform_assets.evaluate.metrics import score_model  # pandas: not at code-location load
        from platform_assets.features.training_file import sample_split

        from platform_assets.evaluate import plots
        from platform_assets.evaluate.report import render_markdown
        from platform_assets.train.network import weights_sha256
        from platform_assets.train.registry import CHALLENGER, CHAMPION, alias_version, load_version

        client = mlflow_registry.client()
        name = use_case.model_name
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

        test, test_split_rows = sample_split(state.paths.of(use_case.name).training_set, "test",
                                             config.max_test_rows, config.sample_seed)
        y = test[use_case.label].to_numpy()
        out_dir = report_path(state, use_case).parent
        models, probabilities = {}, {}
        for role, version in (("challenger", challenger_version), ("champion", champion_version)):
            if version is None:
                continue
            bundle = load_version(client, name, version, out_dir / "models")
            models[role], probabilities[f"{role} v{version}"] = score_model(bundle, test, config, role == "challenger", use_case)
            # Rehashed from the stored weights file: what the rollback rule compares, whatever the tags say.
            models[role].update(version=version, weights_sha256=weights_sha256(bundle.net))

        report = {
            "challenger_version": challenger_version,
            "champion_version": champion_version,
            "threshold": config.threshold,
            "test_rows": int(len(test)),
            "test_split_rows": test_split_rows,
            "models": models,
        }
        path = report_path(state, use_case)
        path.write_text(json.dumps(report, indent=2))
        roc = plots.roc_plot({k: (y, p) for k, p in probabilities.items()}, out_dir / "roc.png")
        calibration = plots.calibration_plot(
            {f"{role} v{m['version']}": m["calibration"] for role, m in models.items()}, out_dir / "calibration.png"
        )
        markdown_path = path.with_suffix(".md")
        markdown_path.write_text(render_markdown(report, {"ROC": roc.name, "Calibration": calibration.name},
                                                 use_case.protected_attribute))
        run_id = client.get_model_version(name, challenger_version).run_id
        for metric, value in models["challenger"]["metrics"].items():
            client.log_metric(run_id, f"test_{metric}", float(value))
        for artifact in (path, markdown_path, roc, calibration):
            client.log_artifact(run_id, str(artifact), artifact_path="eval")
        challenger_metrics = models["challenger"]["metrics"]
        # What the gate check judges: both models' scores, as this materialization recorded them.
        evaluation = {
            "challenger_version": challenger_version,
            "champion_version": champion_version,
            "test_rows": int(len(test)),
            "test_split_rows": test_split_rows,
            "models": {role: {k: m[k] for k in ("version", "weights_sha256", "metrics", "fairness")}
                       for role, m in models.items()},
        }
        return dg.MaterializeResult(
            metadata={
                "challenger_version": challenger_version,
                "champion_version": champion_version or "none",
                "test_rows": int(len(test)),
                "test_split_rows": test_split_rows,
                "evaluation": dg.MetadataValue.json(evaluation),
                "test_roc_auc": challenger_metrics["roc_auc"],
                "test_pr_auc": challenger_metrics["pr_auc"],
                "test_brier": challenger_metrics["brier"],
                **{gap: _gap_metadata(models["challenger"]["fairness"][gap])
                   for gap in ("demographic_parity_difference", "equal_opportunity_difference")},
                # Markdown metadata is rendered in the UI, images included when inlined as data: URIs.
                "report": dg.MetadataValue.md(
                    render_markdown(report, {"ROC": plots.data_uri(roc), "Calibration": plots.data_uri(calibration)},
                                    use_case.protected_attribute)
                ),
                "report_path": dg.MetadataValue.path(str(markdown_path)),
                # The plots themselves on the asset page (inlined images), their files beside.
                "roc_plot": dg.MetadataValue.md(f"![ROC]({plots.data_uri(roc)})\n\n`{roc}`"),
                "calibration_plot": dg.MetadataValue.md(
                    f"![Calibration]({plots.data_uri(calibration)})\n\n`{calibration}`"),
            }
        )


    @dg.asset(
        key=keys.champion,
        deps=[keys.eval_report],
        group_name=use_case.name,
        kinds={"mlflow"},
        description="The registry's champion alias, moved to the evaluated challenger once its gate passed "
                    "(never to a rolled-back model, until a person clears its rollback).",
    )
    @with_cost
    def champion(context: dg.AssetExecutionContext, mlflow_registry: MlflowRegistry) -> dg.MaterializeResult:
        """Moves ``champion`` to the latest evaluation's challenger, only if the gate passed on that evaluation
        and neither the version nor its weights were rolled back since (uncleared).

        In the same run the blocking gate check skips this asset when it fails; run on its own (or by
        automation in a later run), it reads the gate check's verdict on that evaluation from Dagster's
        record of it (:func:`gate_verdict`). It records the verdict on the version it promotes (tags
        ``gate``, ``gate_evaluation``), which deployment and rollback read: the check writes nothing.
        """
        from platform_assets.train.registry import CHAMPION, GATE_TAG, alias_version

        latest = latest_evaluation(context.instance, keys.eval_report)
        if latest is None:
            raise dg.Failure("no evaluation recorded; materialize evaluate/eval_report first")
        evaluation, evaluation_run = latest
        client = mlflow_registry.client()
        name = use_case.model_name
        version = evaluation["challenger_version"]
        # Read now, not from the gate's verdict: a version passed before it (or its weights) was rolled back.
        refusals = rollback_refusals(client, use_case, version, evaluation)
        if refusals:
            raise dg.Failure(f"refusing to make {name} version {version} champion: " + "; ".join(
                r.removeprefix("FAIL: ") for r in refusals))
        verdict = gate_verdict(context.instance, keys.eval_report, version, evaluation_run)
        if verdict != "passed":
            raise dg.Failure(f"refusing to make {name} version {version} champion: its gate is {verdict} on the "
                             f"latest evaluation ({evaluation_run})")
        client.set_model_version_tag(name, version, GATE_TAG, "passed")
        client.set_model_version_tag(name, version, GATE_EVALUATION_TAG, evaluation_run)
        previous = alias_version(client, name, CHAMPION)
        client.set_registered_model_alias(name, CHAMPION, version)
        context.log.info(f"{name}: champion {previous or 'none'} -> {version}")
        return dg.MaterializeResult(
            metadata={"champion_version": version, "previous_champion": previous or "none",
                      "evaluation_run": evaluation_run}
        )

    return [eval_report, champion]

"""The gate as a blocking check: it judges the evaluation's recorded scores, and a rejected challenger
stops the champion alias and the deployment in the same run."""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.defs.evaluate.assets import GATE_EVALUATION_TAG, gate_verdict, latest_evaluation, rollback_refusals
from platform_assets.keys import for_use_case
from platform_assets.resources import MlflowRegistry


class GateConfig(dg.Config):
    """The rules a challenger must meet to become champion."""

    min_roc_auc: float = 0.75
    tolerance: float = 0.005
    brier_tolerance: float = 0.01
    max_demographic_parity_difference: float = 0.3
    max_equal_opportunity_difference: float = 0.3


def gate_bounds(config: GateConfig, use_case: UseCase | None = None) -> dict[str, float]:
    """The bounds as keyword arguments of :func:`platform_assets.evaluate.metrics.decide`.

    The use case's declared ``gate`` replaces the defaults; run config set explicitly replaces both.
    """
    bounds = config.model_dump()
    declared = dict(use_case.gate) if use_case is not None else {}
    unknown = sorted(set(declared) - set(bounds))
    if unknown:
        raise ValueError(f"use case {use_case.name}: unknown gate bound(s) {unknown} (known: {sorted(bounds)})")
    return {**bounds, **declared, **{k: bounds[k] for k in config.model_fields_set}}


def build_evaluation_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The gate on ``<use case>/evaluate/eval_report`` and the check of ``<use case>/evaluate/champion``."""
    keys = for_use_case(use_case)

    @dg.asset_check(
        asset=keys.eval_report,
        blocking=True,
        description="The challenger passed the gate (quality floor, no regression, fairness bounds) on the "
                    "scores the latest evaluation recorded, and neither it nor its weights were rolled back "
                    "(uncleared). It writes nothing: the champion asset records the verdict on the version it promotes.",
    )
    def eval_gate_passed(
        context: dg.AssetCheckExecutionContext, config: GateConfig, mlflow_registry: MlflowRegistry
    ) -> dg.AssetCheckResult:
        """Applies the gate's bounds to the latest ``eval_report`` materialization's scores."""
        from platform_assets.evaluate.metrics import stale_reasons  # pandas: not at code-location load
        from platform_assets.evaluate.metrics import decide
        from platform_assets.train.registry import CHALLENGER, CHAMPION, alias_version

        latest = latest_evaluation(context.instance, keys.eval_report)
        if latest is None:
            return dg.AssetCheckResult(passed=False, metadata={"reasons": "no evaluation recorded"})
        evaluation, evaluation_run = latest
        client = mlflow_registry.client()
        name = use_case.model_name
        challenger_now = alias_version(client, name, CHALLENGER)
        champion_now = alias_version(client, name, CHAMPION)
        if champion_now == challenger_now:
            champion_now = None
        models = evaluation["models"]
        decision = decide(models["challenger"], models.get("champion"), **gate_bounds(config, use_case))
        version = evaluation["challenger_version"]
        reasons = [*stale_reasons(evaluation, challenger_now, champion_now), *decision.reasons,
                   *rollback_refusals(client, use_case, version, evaluation)]
        passed = decision.passed and not any(r.startswith("FAIL") for r in reasons)
        context.log.info("\n".join(reasons))
        return dg.AssetCheckResult(
            passed=passed,
            metadata={"model_version": version, "champion_version": evaluation["champion_version"] or "none",
                      "evaluation_run": evaluation_run, "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in reasons))},
        )


    @dg.asset_check(
        asset=keys.champion,
        blocking=True,
        description="The registry's champion alias points at a version the gate check passed, as Dagster recorded "
                    "it (an alias moved by hand, in the MLflow UI or API, fails; tags set by hand do not help).",
    )
    def champion_passed_the_gate(context: dg.AssetCheckExecutionContext, mlflow_registry: MlflowRegistry) -> dg.AssetCheckResult:
        """Reads the alias from the registry now, and the gate check's verdict on that version from Dagster."""
        from platform_assets.train.registry import CHAMPION, alias_version

        client = mlflow_registry.client()
        name = use_case.model_name
        version = alias_version(client, name, CHAMPION)
        if version is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": f"{name} has no {CHAMPION!r} alias"})
        # The evaluation the champion asset promoted it on (its tag), else any judgement of the version.
        evaluation_run = client.get_model_version(name, version).tags.get(GATE_EVALUATION_TAG)
        verdict = gate_verdict(context.instance, keys.eval_report, version, evaluation_run)
        if verdict == "missing" and evaluation_run:
            verdict = gate_verdict(context.instance, keys.eval_report, version)
        return dg.AssetCheckResult(
            passed=verdict == "passed",
            metadata={"champion_version": version, "gate": verdict, "evaluation_run": evaluation_run or "none"},
        )

    return [eval_gate_passed, champion_passed_the_gate]


CHAMPION_AUDIT_CRON = "*/15 * * * *"


def build_champion_audit(use_case: UseCase) -> tuple:
    """``<use case>__champion_audit`` (a job) and its schedule: the champion check alone, every 15 minutes.

    In the run that moves the alias the ``champion`` asset has already refused anything the check would
    fail; the alias can also be moved by hand (MLflow's UI or API), and only a check run after that sees it.
    """
    keys = for_use_case(use_case)
    job = dg.define_asset_job(
        f"{use_case.name}__champion_audit",
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(keys.champion, "champion_passed_the_gate")),
        description="Judges the registry's champion alias now: one moved by hand to an ungated version fails.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{use_case.name}__champion_audit_every_15_minutes", job=job, cron_schedule=CHAMPION_AUDIT_CRON,
        execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"platform/trigger": "audit"},
    )
    return job, schedule

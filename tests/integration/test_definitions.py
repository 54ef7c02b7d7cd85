"""The code location loads fast and has the shape of the design's asset graph."""

import subprocess
import sys

from tests.conftest import PROJECT_ROOT

USE_CASE = "loan_default"
# Every asset of the loan-default use case that carries at least one check (the two others:
# features/int_applicant_windows, an intermediate dbt model, and quarantine/applications, whose rows the
# validation checks count and search).
CHECKED = {
    f"{USE_CASE}/{key}"
    for key in (
        "raw/applications",
        "validated/applications",
        "features/stg_applications",
        "features/fct_application_features",
        "features/fct_applicant_history",
        "features/fct_applicant_activity",
        "features/feature_store",
        "features/training_set",
        "train/model",
        "evaluate/eval_report",
        "evaluate/champion",
        "deploy/deployment",
        "deploy/batch_predictions",
        "monitor/inference_log",
        "monitor/labelled_predictions",
        "monitor/drift_report",
        "monitor/outcomes",
    )
}
UNCHECKED = {f"{USE_CASE}/features/int_applicant_windows", f"{USE_CASE}/quarantine/applications"}


def test_graph_shape_groups_and_checks():
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    specs = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    of_use_case = {k: v for k, v in specs.items() if k.startswith(f"{USE_CASE}/")}
    assert set(of_use_case) == CHECKED | UNCHECKED
    # one group per use case: every one of its assets, whatever its stage
    assert {k: v.group_name for k, v in of_use_case.items()} == {k: USE_CASE for k in of_use_case}
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys if key.asset_key.path[0] == USE_CASE}
    assert checked == CHECKED  # at least one check on every asset but the two named above
    for key, node in of_use_case.items():
        assert node.description, f"{key} has no description"
    lineage = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()}
    prefix = f"{USE_CASE}/"
    assert prefix + "validated/applications" in lineage[prefix + "features/stg_applications"]
    assert prefix + "features/training_set" in lineage[prefix + "train/model"]
    assert prefix + "evaluate/eval_report" in lineage[prefix + "evaluate/champion"]  # the alias moves after the evaluation
    assert prefix + "evaluate/champion" in lineage[prefix + "deploy/deployment"]
    assert prefix + "evaluate/champion" in lineage[prefix + "deploy/batch_predictions"]
    assert prefix + "monitor/outcomes" in lineage[prefix + "features/training_set"]  # labels that arrived later train the model


def test_both_shipped_use_cases_are_separate_branches_of_the_graph():
    """customer_churn gets the same stages under its own prefix and group; no outcome files (labels in the row)."""
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    churn = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys() if k.path[0] == "customer_churn"}
    stages = {k.split("/")[1] for k in churn}
    assert stages == {"raw", "validated", "quarantine", "features", "train", "evaluate", "deploy", "monitor"}
    assert {v.group_name for v in churn.values()} == {"customer_churn"}
    assert "customer_churn/monitor/outcomes" not in churn
    assert "customer_churn/validated/subscriptions" in {
        p.to_user_string() for p in graph.get(dg_key("customer_churn/features/stg_subscriptions")).parent_keys}
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {f"{u}__{j}" for u in ("loan_default", "customer_churn") for j in
            ("ingest_days", "features_to_serving", "retrain", "drift")} <= jobs
    assert "customer_churn__outcome_days" not in jobs


def dg_key(text):
    import dagster as dg

    return dg.AssetKey.from_user_string(text)


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import sys, platform_assets.definitions; "
        "print(','.join(m for m in ('feast', 'torch', 'mlflow', 'evidently', 'sklearn', 'pandera', 'pandas', 'numpy', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_champion_alias_is_audited_on_a_schedule_by_its_check_alone():
    """A hand-moved alias is only seen by a check run after the move: a running schedule runs it alone."""
    import dagster as dg

    from platform_assets.definitions import defs

    for use_case in ("loan_default", "customer_churn"):
        schedule = defs.get_schedule_def(f"{use_case}__champion_audit_every_15_minutes")
        assert schedule.cron_schedule == "*/15 * * * *"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        job = defs.resolve_job_def(schedule.job_name)
        assert [n.name for n in job.graph.node_defs] == [
            f"{use_case}__evaluate__champion_champion_passed_the_gate"]

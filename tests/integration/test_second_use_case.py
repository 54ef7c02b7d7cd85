"""The customer-churn use case through the same generic stages: landed, validated, trained, gated, served, monitored.

Shaped unlike loan default (another key and label, the label in the row, a
three-valued protected attribute, no online features); nothing in the stages
is written for it: only its declaration, schema, generator, dbt model and Feast view.
"""

import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from platform_assets import definitions, settings
from platform_assets.declared import use_case
from platform_assets.keys import for_use_case
from tests.conftest import SERVING_PYTHON, day_range_tags

CHURN = "customer_churn"


@pytest.fixture(scope="module")
def churn_served(tmp_path_factory):
    """30 days of snapshots ingested, features built, a model trained, gated and served, one day of traffic."""
    if not SERVING_PYTHON.exists():
        pytest.skip(f"serving environment missing at {SERVING_PYTHON}: run `make install`")
    from platform_assets.deploy.processes import free_port
    from platform_assets.deploy.release import stop_serving
    from platform_assets.resources import LocalDeployer
    from platform_assets.deploy.serving import predict_over_http
    from platform_assets.train.registry import CHAMPION, alias_version
    from platform_assets.traffic import request_fields, send_requests
    from platform_assets.use_cases.customer_churn.generator import write_sample

    root = tmp_path_factory.mktemp("churn_home")
    declared = use_case(CHURN)
    start = dt.date.today() - dt.timedelta(days=31)
    rows = write_sample(settings.paths(root).landing / declared.source.landing_folder, start, 30, 300, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        (root / "dagster_home").mkdir()
        # A free stable port: a demo's endpoints may serve on the default ports meanwhile.
        resources = {**definitions.embedded_resources(root), "deployer": LocalDeployer(http_port=free_port())}
        defs = definitions.build_definitions(resources)
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            def run(job, **kwargs):
                return defs.resolve_job_def(f"{CHURN}__{job}").execute_in_process(
                    instance=instance, raise_on_error=False, **kwargs)

            last = (start + dt.timedelta(days=29)).isoformat()
            results = {"ingest_days": run("ingest_days", tags=day_range_tags(start.isoformat(), last)),
                       "features_to_serving": run("features_to_serving")}
            paths = settings.paths(root).of(CHURN)
            try:
                deployment = json.loads((paths.serving / "deployment.json").read_text())
                with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
                    today = con.execute("SELECT * FROM validated.subscriptions WHERE _partition = ?", [last]).df()
                traffic = send_requests(deployment["url"], today, declared.source, concurrency=4)
                results["inference_days"] = run("inference_days", partition_key=last)
                results["drift"] = run("drift")
                results["batch_days"] = run("batch_days", partition_key=last)
                # A second version released blue/green, then rolled back by the use case's rollback job.
                results["redeploy"] = run("features_to_serving")
                redeployed = json.loads((paths.serving / "deployment.json").read_text())
                results["rollback"] = run("rollback")
                fields = [c for c in today.columns if c in request_fields(declared.source)]
                answered = predict_over_http(deployment["url"], today.head(3)[fields].to_dict("records"))[1]
                client = definitions.embedded_resources(root)["mlflow_registry"].client()
                after_rollback = {"champion": alias_version(client, declared.model_name, CHAMPION),
                                  "rolled_back": client.get_model_version(declared.model_name, "2").tags.get("rolled_back")}
                # The challenger (version 2) in shadow beside version 1, then judged on the labelled live requests.
                results["shadow"] = run("shadow_challenger")
                shadowed = send_requests(deployment["url"], today, declared.source, concurrency=4)
                refused = {"rolled_back": run("promote_on_live_quality")}  # it was rolled back
                client.delete_model_version_tag(declared.model_name, "2", "rolled_back")  # an operator clears it

                def promote(**config):
                    return run("promote_on_live_quality", run_config={"ops": {f"{CHURN}__deploy__deployment": {
                        "config": {"promote_on_live_quality": True, **config}}}})

                refused["too_few"] = promote(min_labelled_rows=10 ** 6)
                refused["must_be_better"] = promote(max_auc_drop=-1.0)  # 1.0 better in AUC: impossible
                results["promote"] = promote(max_auc_drop=0.05, max_brier_rise=0.05)
                promoted = {"release": json.loads((paths.serving / "release.json").read_text()),
                            "champion": alias_version(client, declared.model_name, CHAMPION),
                            "answered": predict_over_http(deployment["url"], today.head(3)[fields].to_dict("records"))[1]}
            finally:
                stop_serving(paths.serving)
            yield {"root": root, "instance": instance, "results": results, "rows": rows, "traffic": traffic,
                   "today": today, "deployment": deployment, "paths": paths, "redeployed": redeployed,
                   "answered_after_rollback": answered, "after_rollback": after_rollback, "shadowed": shadowed,
                   "promoted": promoted, "refused": refused}


def test_the_state_of_every_check_after_the_graph_is_exactly_the_expected_one(churn_served):
    """What the UI shows for each of the use case's checks once the whole graph ran: a state per check."""
    from tests.conftest import check_states

    keys = [k for k in definitions.defs.resolve_asset_graph().asset_check_keys if k.asset_key.path[0] == CHURN]
    states = check_states(churn_served["instance"], keys)
    # Its 28 checks (dbt tests included) all judged, all held: the skew check on the feature store too, on
    # the second build, which came after the day's traffic.
    assert len(states) == 28 and states == dict.fromkeys(states, "passed"), states


def test_every_stage_of_the_second_use_case_runs_on_the_generic_assets(churn_served):
    results = churn_served["results"]
    failed = {job: [e.check_name for e in r.get_asset_check_evaluations() if not e.passed]
              for job, r in results.items()}
    assert all(r.success for r in results.values()), failed
    # No check failed or warned in any of them (a warning does not fail a run: asserted here, not hidden).
    assert failed == {job: [] for job in results}
    keys = for_use_case(use_case(CHURN))
    materialized = {e.asset_key for r in results.values() for e in r.get_asset_materialization_events()}
    assert {keys.raw, keys.validated, keys.quarantined, keys.feature("fct_subscription_features"),
            keys.feature_store, keys.training_set, keys.model, keys.eval_report, keys.champion, keys.deployment,
            keys.inference_log, keys.labelled_predictions, keys.drift_report} <= materialized
    with duckdb.connect(str(settings.paths(churn_served["root"]).warehouse), read_only=True) as con:
        raw, valid, quarantined = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "raw.subscriptions", "validated.subscriptions", "quarantine.subscriptions"))
        leaked = con.execute("SELECT count(*) FROM validated.subscriptions WHERE contact_email LIKE '%@%'").fetchone()[0]
    assert raw == churn_served["rows"] == valid + quarantined and quarantined > 0
    assert leaked == 0  # personal data masked


def test_the_report_is_headed_by_its_own_protected_attribute_and_the_model_learned(churn_served):
    event = churn_served["instance"].get_latest_materialization_event(for_use_case(use_case(CHURN)).eval_report)
    metadata = event.asset_materialization.metadata
    assert "## Fairness slices of the challenger (gender)" in metadata["report"].value
    evaluation = metadata["evaluation"].value
    assert set(evaluation["models"]["challenger"]["fairness"]["slices"]) == {"female", "male", "nonbinary"}
    assert evaluation["models"]["challenger"]["metrics"]["roc_auc"] > 0.7


def test_served_rows_are_logged_with_their_key_and_joined_to_their_labels(churn_served):
    traffic, today = churn_served["traffic"], churn_served["today"]
    assert traffic.answered == traffic.sent == len(today) and not traffic.errors
    with duckdb.connect(str(settings.paths(churn_served["root"]).warehouse), read_only=True) as con:
        logged = con.execute("SELECT subscription_id, probability FROM monitor_customer_churn.inference_log "
                             "WHERE feature_source = 'online'").df()
        labelled = con.execute("SELECT count(*) FROM monitor_customer_churn.labelled_predictions").fetchone()[0]
    assert sorted(logged["subscription_id"]) == sorted(today["subscription_id"])
    served = dict(zip(logged["subscription_id"], logged["probability"]))
    assert all(abs(served[k] - p) < 1e-9 for k, p in traffic.probabilities.items())
    assert labelled == len(today)  # the label comes with the row: every served prediction is labelled
    drift = churn_served["results"]["drift"].asset_materializations_for_node(
        "customer_churn__monitor__drift_report")[0].metadata
    assert drift["labelled_rows"].value == len(today)


def test_a_rollback_serves_the_previous_version_again_and_makes_it_champion(churn_served):
    results = churn_served["results"]
    assert results["redeploy"].success and results["rollback"].success
    first, second = churn_served["deployment"], churn_served["redeployed"]
    assert (first["model_version"], second["model_version"]) == ("1", "2")
    assert second["url"] == first["url"]  # one stable endpoint across releases
    assert churn_served["answered_after_rollback"]["tags"]["model_version"] == "1"
    assert churn_served["after_rollback"] == {"champion": "1", "rolled_back": "true"}


def test_a_shadow_is_promoted_on_its_live_quality_only_when_it_qualifies(churn_served):
    results, promoted, refused = churn_served["results"], churn_served["promoted"], churn_served["refused"]
    assert results["shadow"].success
    assert churn_served["shadowed"].answered == len(churn_served["today"])  # callers unaffected by the shadow

    def refusal(result):
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        return failure.event_specific_data.error.message

    assert "was rolled back before" in refusal(refused["rolled_back"])
    assert "labelled requests answered by both versions" in refusal(refused["too_few"])
    assert "worse live than v1" in refusal(refused["must_be_better"])
    assert results["promote"].success
    [materialization] = results["promote"].asset_materializations_for_node(f"{CHURN}__deploy__deployment")
    live = materialization.metadata["live_comparison"].value
    assert (live["role"], live["decision"], live["stable_version"], live["challenger_version"]) == \
        ("shadow", "promote", "1", "2")
    assert live["labelled"] == len(churn_served["today"])  # every shadowed request is labelled (label in the row)
    assert live["stable_auc"] > 0.6 and live["challenger_auc"] > 0.6
    assert promoted["release"]["stable"]["version"] == "2" and promoted["release"]["shadow"] is None
    assert promoted["champion"] == "2" and promoted["answered"]["tags"]["model_version"] == "2"


def test_batch_scores_of_a_day_equal_what_the_server_answered_for_the_same_rows(churn_served):
    assert churn_served["results"]["batch_days"].success
    checks = churn_served["results"]["batch_days"].get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["every_row_scored_once"] and checks[0].passed
    with duckdb.connect(str(settings.paths(churn_served["root"]).warehouse), read_only=True) as con:
        batch = con.execute("SELECT subscription_id, model_version, probability "
                            "FROM monitor_customer_churn.batch_predictions").df()
    today, served = churn_served["today"], churn_served["traffic"].probabilities
    assert sorted(batch["subscription_id"]) == sorted(today["subscription_id"]) and set(batch["model_version"]) == {"1"}
    offline = dict(zip(batch["subscription_id"], batch["probability"]))
    assert max(abs(offline[k] - p) for k, p in served.items()) < 1e-6

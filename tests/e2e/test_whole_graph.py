"""The whole asset graph, in process, on small generated data: real outcomes at every stage."""

import datetime as dt
import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from platform_assets import definitions, loop, settings
from platform_assets.deploy.feature_server import stop_feature_server
from platform_assets.deploy.serving import free_port, predict_over_http, stop_model_server
from platform_assets.resources import ModelServing
from platform_assets.train.network import load_bundle
from tests.conftest import SERVING_PYTHON

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    """The history materialized as `make materialize` does, then two live days of traffic through the
    real server with the platform's own automation (sensors and conditions, ticked in process)."""
    if not SERVING_PYTHON.exists():
        pytest.skip(f"serving environment missing at {SERVING_PYTHON}: run `make install`")
    root = tmp_path_factory.mktemp("e2e_state")
    resources = definitions.build_resources(root)
    resources["serving"] = ModelServing(http_port=free_port())
    paths = settings.paths(root)
    config = loop.LoopConfig(history_days=38, live_days=2, rows_per_day=400, drift_day=None, seed=7,
                             label_delay_days=(7, 30))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            defs = definitions.build_definitions(resources)
            try:
                reports, daemon = loop.simulate(config, root, instance, defs, dt.date(2026, 9, 1), echo=lambda s: None)
                yield instance, daemon, reports, paths
            finally:
                stop_model_server(paths.serving / "server.json")
                stop_feature_server(paths.serving / "feature_server.json")


def _runs(instance):
    return instance.get_runs()


def test_every_asset_materialized_and_every_check_passed(graph_run):
    instance, daemon, _, _ = graph_run
    failed_runs = [r for r in daemon.history if not r["success"]]
    assert failed_runs == []
    materialized = {k.to_user_string() for k in definitions.defs.resolve_asset_graph().get_all_asset_keys()
                    if instance.get_latest_materialization_event(k) is not None}
    assert materialized == {k.to_user_string() for k in definitions.defs.resolve_asset_graph().get_all_asset_keys()}
    evaluations = [r.dagster_event.event_specific_data
                   for run in _runs(instance)
                   for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    failed = {e.asset_check_key.to_user_string(): e.severity for e in evaluations if not e.passed}
    # The sample data is from 2026-09/10: the freshness check rightly warns that it is stale; nothing else fails.
    assert failed == {"raw/applications:raw_applications_fresh": dg.AssetCheckSeverity.WARN}
    assert {e.asset_check_key for e in evaluations} == set(definitions.defs.resolve_asset_graph().asset_check_keys)
    # The live days came in through the sensors and the automation conditions, not by hand.
    by = {r["by"] for r in daemon.history}
    assert {"landing_files_sensor", "inference_log_files", "automation"} <= by


def test_no_row_is_lost_between_raw_and_validation(graph_run):
    _, _, _, paths = graph_run
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        raw, valid, quarantined = (
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("raw.applications", "validated.applications", "quarantine.applications")
        )
    assert raw == valid + quarantined
    assert quarantined > 0


def test_model_beats_the_auc_bound_on_the_test_split(graph_run):
    _, _, _, paths = graph_run
    report = json.loads((paths.reports / "eval" / "eval_report.json").read_text())
    assert report["passed"]
    assert report["models"]["challenger"]["metrics"]["roc_auc"] > 0.75
    assert report["test_rows"] > 300


def test_served_prediction_equals_offline_prediction(graph_run):
    _, _, _, paths = graph_run
    deployment = json.loads((paths.serving / "deployment.json").read_text())
    bundle = load_bundle(deployment["bundle"])
    test = pd.read_parquet(paths.training_set).query("split == 'test'").head(100)
    served, meta = predict_over_http(deployment["url"], test[bundle.preprocessor.input_names].to_dict("records"))
    np.testing.assert_allclose(served, bundle.predict_proba(test), atol=1e-5, rtol=0)
    assert meta["tags"]["model_version"] == deployment["model_version"]


def test_every_answered_request_is_in_the_inference_log_once(graph_run):
    _, _, reports, paths = graph_run
    answered = {rid for r in reports for app, rid in r.traffic.request_ids.items() if app in r.traffic.probabilities}
    rejected = sum(r.sent - r.answered for r in reports)
    assert len(answered) > 500 and rejected == sum(r.errors.get(400, 0) for r in reports)  # dirty rows: 400
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        logged = con.execute("SELECT request_id, count(*) FROM monitor.inference_log WHERE feature_source = 'online' "
                             "GROUP BY 1").fetchall()
        probabilities = dict(con.execute("SELECT application_id, probability FROM monitor.inference_log "
                                         "WHERE feature_source = 'online'").fetchall())
    assert {rid for rid, _ in logged} == answered and all(n == 1 for _, n in logged)
    for r in reports:
        for app, probability in list(r.traffic.probabilities.items())[:50]:
            assert probabilities[app] == pytest.approx(probability, abs=1e-12)


def test_no_drift_is_reported_where_none_was_injected(graph_run):
    instance, daemon, reports, _ = graph_run
    figures = {k: getattr(v, "value", v) for k, v in
               instance.get_latest_materialization_event(dg.AssetKey(["monitor", "drift_report"]))
               .asset_materialization.metadata.items()}
    assert figures["current_rows"] > 500 and figures["columns"] == 15
    assert figures["drift_share"] <= 0.2, figures["drifted"]
    assert not any(r.retrains_requested for r in reports)
    assert all(r["job"] != "retrain" for r in daemon.history)


def test_a_served_prediction_traces_back_to_its_landing_file(graph_run):
    from platform_assets.lineage import trace_request

    _, _, reports, paths = graph_run
    app, request_id = next(iter(reports[0].traffic.probabilities)), None
    request_id = reports[0].traffic.request_ids[app]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(paths.root))
        trace = trace_request(paths, request_id)
    assert trace["request"]["application_id"] == app and trace["model"]["gate"] == "passed"
    assert trace["mlflow_run"]["dagster_run_id"] and trace["training_set"]["digest"]
    assert trace["application"]["landing_file"].endswith(".parquet") and len(trace["application"]["file_sha256"]) == 64
    assert trace["online_features"][0]["prior_applications_365d"] >= 0
    assert trace["training_data"]["landing_files"] and all(len(f["sha256"]) == 64 for f in trace["training_data"]["landing_files"])
    views = {v["view"] for v in trace["features"]["feature_views"]}
    assert {"application_features", "applicant_history", "applicant_activity"} <= views

"""The whole asset graph, in process, on small generated data: real outcomes at every stage."""

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from platform_assets import definitions, settings
from platform_assets.deploy.feature_server import stop_feature_server
from platform_assets.deploy.serving import free_port, predict_over_http, stop_model_server
from platform_assets.resources import ModelServing
from platform_assets.train.network import load_bundle
from tests.conftest import SERVING_PYTHON, materialize_graph, write_sample_landing

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    """Materializes every asset and check once; stops the model server afterwards."""
    if not SERVING_PYTHON.exists():
        pytest.skip(f"serving environment missing at {SERVING_PYTHON}: run `make install`")
    root = tmp_path_factory.mktemp("e2e_state")
    rows = write_sample_landing(root, days=40, rows_per_day=300)
    resources = definitions.build_resources(root)
    resources["serving"] = ModelServing(http_port=free_port())
    paths = settings.paths(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            try:
                # The 40 days in one run, then features to serving in a second, as `make materialize` does.
                runs = materialize_graph(instance, resources, "2026-09-01", "2026-10-10")
                yield runs, paths, rows
            finally:
                stop_model_server(paths.serving / "server.json")
                stop_feature_server(paths.serving / "feature_server.json")


def test_every_asset_materialized_and_every_check_passed(graph_run):
    runs, _, _ = graph_run
    assert len(runs) == 2 and all(r.success for r in runs)
    events = [e for r in runs for e in r.get_asset_materialization_events()]
    materialized = {e.asset_key.to_user_string() for e in events}
    # Each of the 40 days is its own partition of the raw asset.
    assert len({e.partition for e in events if e.asset_key.to_user_string() == "raw/applications"}) == 40
    assert {"raw/applications", "validated/applications", "quarantine/applications", "features/feature_store",
            "features/training_set", "train/model", "evaluate/eval_report", "deploy/deployment",
            "monitor/inference_log", "monitor/drift_report", "features/fct_applicant_history"} <= materialized
    evaluations = [e for r in runs for e in r.get_asset_check_evaluations()]
    failed = {e.asset_check_key.to_user_string(): e.severity for e in evaluations if not e.passed}
    # The sample data ends in 2026-10: the freshness check rightly warns that it is stale; nothing else fails.
    assert failed == {"raw/applications:raw_applications_fresh": dg.AssetCheckSeverity.WARN}
    assert len(evaluations) == len(definitions.defs.resolve_asset_graph().asset_check_keys)


def test_no_row_is_lost_between_raw_and_validation(graph_run):
    _, paths, rows = graph_run
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        raw, valid, quarantined = (
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("raw.applications", "validated.applications", "quarantine.applications")
        )
    assert raw == rows == valid + quarantined
    assert quarantined > 0


def test_model_beats_the_auc_bound_on_the_test_split(graph_run):
    _, paths, _ = graph_run
    report = json.loads((paths.reports / "eval" / "eval_report.json").read_text())
    assert report["passed"]
    assert report["models"]["challenger"]["metrics"]["roc_auc"] > 0.75
    assert report["test_rows"] > 300


def test_served_prediction_equals_offline_prediction(graph_run):
    _, paths, _ = graph_run
    deployment = json.loads((paths.serving / "deployment.json").read_text())
    bundle = load_bundle(deployment["bundle"])
    test = pd.read_parquet(paths.training_set).query("split == 'test'").head(100)
    served, meta = predict_over_http(deployment["url"], test[bundle.preprocessor.input_names].to_dict("records"))
    np.testing.assert_allclose(served, bundle.predict_proba(test), atol=1e-5, rtol=0)
    assert meta["tags"]["model_version"] == deployment["model_version"]


def test_drift_report_written_with_drifted_column_count(graph_run):
    runs, paths, _ = graph_run
    assert (paths.reports / "drift" / "drift_report.html").stat().st_size > 10_000
    summary = json.loads((paths.reports / "drift" / "drift_report.json").read_text())
    metadata = runs[-1].asset_materializations_for_node("monitor__drift_report")[0].metadata
    assert metadata["drifted_columns"].value == summary["drifted_columns"]
    assert 0 <= summary["drifted_columns"] <= summary["columns"] == 15


def test_every_logged_prediction_traces_back_to_its_raw_file(graph_run):
    from platform_assets.lineage import trace_prediction

    _, paths, _ = graph_run
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        application_id = con.execute("SELECT application_id FROM monitor.inference_log LIMIT 1").fetchone()[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(paths.root))
        trace = trace_prediction(paths, application_id)
    assert trace["model"]["gate"] == "passed"
    assert trace["training_run"]["dagster_run_id"]
    assert trace["raw"]["file"].endswith(".parquet") and trace["raw"]["row"] >= 1

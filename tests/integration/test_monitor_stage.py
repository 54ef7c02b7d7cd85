"""The monitor stage on log files as the server writes them: nothing lost, checks that fail on planted faults."""

import json

import dagster as dg
import duckdb
import pandas as pd

from platform_assets import definitions, settings
from platform_assets.defs.monitor import checks as monitor_checks
from platform_assets.defs.judging import NotJudged, judge
from tests.conftest import loan, loan_asset, loan_check, loan_keys, loan_paths

LOAN = loan()
INFERENCE_LOG = loan_asset("monitor", "inference_log")
LINES_ACCOUNTED_FOR = loan_check("inference_log_lines_accounted_for")


def _table(name):
    """The loan-default use case's monitoring table ``name`` (schema ``monitor_loan_default``)."""
    return LOAN.monitor_table(name)


def _write_log(root, day, rows, worker="h-1", torn=False):
    path = loan_paths(root).inference / f"day={day}" / f"{worker}-2026112310.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"request_id": f"{day}-{worker}-{i}", "row": 0, "served_at": "2026-11-23T10:00:00+00:00",
                         "event_ts": f"{day}T0{i % 10}:00:00", "model_name": "m", "model_version": "3",
                         "application_id": f"app-{day}-{worker}-{i}", "applicant_id": i, "feature_source": "online",
                         "income": 1000.0 + i, "region": "north", "probability": 0.1 + i / 1000, "latency_ms": 2.0})
             for i in range(rows)]
    path.write_text("\n".join(lines) + "\n" + ('{"request_id": "cut' if torn else ""))
    return path


def _materialize(resources, day, instance):
    return dg.materialize(
        [INFERENCE_LOG, LINES_ACCOUNTED_FOR],
        resources=resources, partition_key=day, instance=instance, raise_on_error=False,
    )


def test_a_day_of_log_files_is_ingested_whole_and_the_check_fails_when_a_line_goes_missing(tmp_path):
    resources = definitions.embedded_resources(tmp_path)
    _write_log(tmp_path, "2026-10-20", 30, "h-1")
    _write_log(tmp_path, "2026-10-20", 20, "h-2", torn=True)
    _write_log(tmp_path, "2026-10-21", 5, "h-1")
    with dg.instance_for_test() as instance:
        result = _materialize(resources, "2026-10-20", instance)
        assert result.success
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["dagster/row_count"].value == 50 and meta["rejected_lines"].value == 1 and meta["lines"].value == 51
        with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
            assert con.execute(f"SELECT count(*), count(DISTINCT request_id) FROM {_table('inference_log')}").fetchone() == (50, 50)
            assert con.execute(f"SELECT count(*) FROM {_table('inference_log_rejects')}").fetchone()[0] == 1
        # Again: the day is replaced, not appended.
        assert _materialize(resources, "2026-10-20", instance).success
        with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
            assert con.execute(f"SELECT count(*) FROM {_table('inference_log')}").fetchone()[0] == 50
        # A line the server wrote after ingestion: the recount no longer matches, the blocking check fails.
        with open(_write_log(tmp_path, "2026-10-20", 30, "h-1"), "a") as log:
            log.write(json.dumps({"request_id": "late"}) + "\n")
        check = dg.materialize(
            [INFERENCE_LOG, LINES_ACCOUNTED_FOR],
            resources=resources, instance=instance, raise_on_error=False,
            selection=dg.AssetSelection.checks_for_assets(loan_keys().inference_log),
        )
        evaluation = check.get_asset_check_evaluations()[0]
        assert not evaluation.passed and "2026-10-20" in evaluation.metadata["differing_days"].value


def test_a_day_without_log_files_fails_visibly(tmp_path):
    resources = definitions.embedded_resources(tmp_path)
    with dg.instance_for_test() as instance:
        result = _materialize(resources, "2026-10-22", instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no inference log files for 2026-10-22 under" in failure.event_specific_data.error.message


def test_labelled_predictions_join_only_outcomes_known_by_now(tmp_path):
    resources = definitions.embedded_resources(tmp_path)
    _write_log(tmp_path, "2026-10-20", 10)
    apps = pd.DataFrame({
        "application_id": [f"app-2026-10-20-h-1-{i}" for i in range(10)],
        "application_ts": pd.Timestamp("2026-10-20 01:00"),
        "is_default": [i % 2 for i in range(10)],
        # Four outcomes known by the newest application (2026-10-25), six later.
        "label_ts": [pd.Timestamp("2026-10-23")] * 4 + [pd.Timestamp("2026-11-30")] * 6,
    })
    newest = apps.head(1).assign(application_id="later", application_ts=pd.Timestamp("2026-10-25"))
    settings.paths(tmp_path).warehouse.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
        con.execute("CREATE SCHEMA validated")
        con.execute("CREATE TABLE validated.applications AS SELECT * FROM (SELECT * FROM apps UNION ALL SELECT * FROM newest)")
    with dg.instance_for_test() as instance:
        assert _materialize(resources, "2026-10-20", instance).success
        result = dg.materialize([loan_asset("monitor", "labelled_predictions")], resources=resources, instance=instance)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 4 and meta["unlabelled_rows"].value == 6
    assert meta["label_delay_days_p50"].value > 2.5
    check = loan_check("labelled_predictions_are_served_rows_with_their_outcome")
    assert judge(check, warehouse=resources["warehouse"]).passed
    table = f"{LOAN.monitor_schema}.labelled_predictions"
    plants = {  # a join that fans out, an outcome dated before the decision, a label that is not 0/1
        "duplicated_rows": f"INSERT INTO {table} SELECT * FROM {table} LIMIT 1",
        "labelled_before_served": f"UPDATE {table} SET label_ts = event_ts - INTERVAL 1 DAY "
                                  f"WHERE request_id = (SELECT min(request_id) FROM {table})",
        "outcomes_not_0_or_1": f"UPDATE {table} SET is_default = 2 WHERE request_id = (SELECT min(request_id) FROM {table})",
    }
    path = settings.paths(tmp_path).warehouse
    for measure, sql in plants.items():
        backup = path.read_bytes()
        with duckdb.connect(str(path)) as con:
            con.execute(sql)
        found = judge(check, warehouse=resources["warehouse"])
        assert not found.passed and found.metadata[measure].value == 1, (measure, found.metadata)
        path.write_bytes(backup)
    with duckdb.connect(str(path)) as con:
        con.execute(f"DELETE FROM {table}")
    assert isinstance(judge(check, warehouse=resources["warehouse"]), NotJudged)


def _checks_on_report(metadata):
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=loan_keys().drift_report,
                                                                    metadata=metadata))
        context = dg.build_asset_check_context(instance=instance)
        drift = judge(loan_check("drift_share_under_threshold"), context, monitor_checks.DriftThresholdConfig())
        quality = judge(loan_check("quality_above_bound"), context, monitor_checks.QualityBoundConfig())
    return drift, quality


# A window where a fifth of the outcomes are positive: always answering 0.2 scores a Brier of 0.16.
BASE = {"base_rate": 0.2, "base_rate_brier": 0.16, "labelled_rows": 900}


def test_drift_and_quality_checks_judge_the_report_figures():
    drift, quality = _checks_on_report({"drift_share": 0.1, "roc_auc": 0.81, "auc_drop": 0.01, "brier": 0.12, **BASE})
    assert drift.passed and quality.passed and quality.metadata["brier_bound"].value == 0.16
    drift, quality = _checks_on_report({"drift_share": 0.4, "drifted": "income", "roc_auc": 0.70,
                                        "auc_drop": 0.11, "brier": 0.12, **BASE})
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert not quality.passed and quality.metadata["auc_drop"].value == 0.11
    # Ranking held, but the probabilities score worse than answering the base rate (0.2 under the old 0.25 bound).
    _, quality = _checks_on_report({"drift_share": 0.0, "roc_auc": 0.80, "auc_drop": 0.02, "brier": 0.2, **BASE})
    assert not quality.passed and quality.metadata["brier"].value == 0.2


def test_drift_and_quality_checks_say_not_judged_with_nothing_to_judge():
    """Too few outcomes, or too little traffic for a drift report: not judged, never passed."""
    drift, quality = _checks_on_report({"drift_share": None, "drifted": "not enough traffic", "current_rows": 3,
                                        "roc_auc": None, "labelled_rows": 12})
    assert isinstance(drift, NotJudged) and "not enough traffic" in drift.why
    assert isinstance(quality, NotJudged) and "12 labelled rows" in quality.why


def test_skew_check_fails_on_a_served_value_that_differs_from_the_point_in_time_one(tmp_path):
    """Served features against the point-in-time ones Feast retrieves (from the planted marts) for each landed row."""
    from platform_assets.features import feast_ops

    resources = definitions.embedded_resources(tmp_path)
    _write_log(tmp_path, "2026-10-20", 3)
    with dg.instance_for_test() as instance:
        assert _materialize(resources, "2026-10-20", instance).success
    store = resources["feast"].store()
    feast_ops.apply_repo(store, resources["feast"].repo_path)
    application_columns = [f.name for f in store.get_feature_view("application_features").features]
    history_columns = [f.name for f in store.get_feature_view("applicant_history").features]
    marts = ("fct_application_features", "fct_applicant_history")
    data_dir = settings.paths(tmp_path).feast / "data"
    with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
        served = con.execute(f"SELECT application_id, applicant_id, CAST(event_ts AS TIMESTAMP) AS event_timestamp, "
                             f"income, region FROM {_table('inference_log')}").df()
        # The rows have landed since; their marts hold exactly what the server used.
        application = served.drop(columns="applicant_id").assign(
            **{n: 0.0 for n in application_columns if n not in served.columns})
        history = served[["applicant_id", "event_timestamp"]].assign(**{n: 0.0 for n in history_columns})
        con.execute("CREATE SCHEMA validated")
        con.execute(f"CREATE TABLE {LOAN.source.validated_table} AS SELECT application_id, applicant_id, "
                    "event_timestamp AS application_ts FROM served")
        con.execute("CREATE SCHEMA features")
        con.execute("CREATE TABLE features.fct_application_features AS SELECT * FROM application")
        con.execute("CREATE TABLE features.fct_applicant_history AS SELECT * FROM history")
        feast_ops.export_marts(con, data_dir, marts)

    def check():
        context = dg.build_asset_check_context(instance=dg.DagsterInstance.ephemeral())
        return judge(loan_check("served_features_match_point_in_time", "monitor", "inference_log"), context,
                     config=monitor_checks.SkewSampleConfig(), state=resources["state"],
                     warehouse=resources["warehouse"], feast=resources["feast"])

    assert check().passed and check().metadata["requests_compared"].value == 3
    with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
        con.execute("UPDATE features.fct_application_features SET income = income + 1 WHERE application_id LIKE '%-1'")
        feast_ops.export_marts(con, data_dir, marts)
    result = check()
    assert not result.passed and result.metadata["mismatching_requests"].value == 1
    assert result.metadata["features"].value == "income"


def test_an_outcome_file_is_ingested_whole_and_the_check_fails_when_a_row_goes_missing(tmp_path):
    outcomes_dir = loan_paths(tmp_path).outcomes
    outcomes_dir.mkdir(parents=True)
    rows = [f"app-{i},{i % 2},2026-10-20T0{i % 10}:00:00" for i in range(40)]
    (outcomes_dir / "outcomes_2026-10-20.csv").write_text(
        "application_id,is_default,label_ts\n" + "\n".join([*rows, "app-x,2,2026-10-20T01:00:00"]) + "\n")
    resources = definitions.embedded_resources(tmp_path)
    assets = [loan_asset("monitor", "outcomes"), loan_check("outcome_rows_accounted_for")]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=resources, partition_key="2026-10-20", instance=instance)
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["dagster/row_count"].value == 40 and meta["rejected_rows"].value == 1
        assert meta["not_yet_validated"].value == 40  # no applications landed in this test
        assert all(e.passed for e in result.get_asset_check_evaluations())
        with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
            assert con.execute(f"SELECT reason FROM {_table('outcome_rejects')}").fetchone()[0] == "is_default: not 0 or 1: 2"
            con.execute(f"DELETE FROM {_table('outcomes')} WHERE application_id = 'app-7'")  # a row lost after ingestion
        check = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False,
                               selection=dg.AssetSelection.checks_for_assets(loan_keys().outcomes))
        evaluation = check.get_asset_check_evaluations()[0]
        assert not evaluation.passed
        assert evaluation.metadata["differing_days"].value == {"2026-10-20": "41 data rows in the files, 40 rows held + rejected"}

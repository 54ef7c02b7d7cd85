"""The monitor stage on log files as the server writes them: nothing lost, checks that fail on planted faults."""

import json

import dagster as dg
import duckdb
import pandas as pd

from platform_assets import definitions, settings
from platform_assets.monitor import assets as monitor_assets
from platform_assets.monitor import checks as monitor_checks


def _write_log(root, day, rows, worker="h-1", torn=False):
    path = settings.paths(root).inference / f"day={day}" / f"{worker}-2026112310.jsonl"
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
        [monitor_assets.inference_log, monitor_checks.inference_log_lines_accounted_for],
        resources=resources, partition_key=day, instance=instance, raise_on_error=False,
    )


def test_a_day_of_log_files_is_ingested_whole_and_the_check_fails_when_a_line_goes_missing(tmp_path):
    resources = definitions.build_resources(tmp_path)
    _write_log(tmp_path, "2026-10-20", 30, "h-1")
    _write_log(tmp_path, "2026-10-20", 20, "h-2", torn=True)
    _write_log(tmp_path, "2026-10-21", 5, "h-1")
    with dg.instance_for_test() as instance:
        result = _materialize(resources, "2026-10-20", instance)
        assert result.success
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["dagster/row_count"].value == 50 and meta["rejected_lines"].value == 1 and meta["lines"].value == 51
        with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
            assert con.execute("SELECT count(*), count(DISTINCT request_id) FROM monitor.inference_log").fetchone() == (50, 50)
            assert con.execute("SELECT count(*) FROM monitor.inference_log_rejects").fetchone()[0] == 1
        # Again: the day is replaced, not appended.
        assert _materialize(resources, "2026-10-20", instance).success
        with duckdb.connect(str(settings.paths(tmp_path).warehouse)) as con:
            assert con.execute("SELECT count(*) FROM monitor.inference_log").fetchone()[0] == 50
        # A line the server wrote after ingestion: the recount no longer matches, the blocking check fails.
        with open(_write_log(tmp_path, "2026-10-20", 30, "h-1"), "a") as log:
            log.write(json.dumps({"request_id": "late"}) + "\n")
        check = dg.materialize(
            [monitor_assets.inference_log, monitor_checks.inference_log_lines_accounted_for],
            resources=resources, instance=instance, raise_on_error=False,
            selection=dg.AssetSelection.checks_for_assets(monitor_assets.INFERENCE_LOG),
        )
        evaluation = check.get_asset_check_evaluations()[0]
        assert not evaluation.passed and "2026-10-20" in evaluation.metadata["differing_days"].value


def test_a_day_without_log_files_fails_visibly(tmp_path):
    resources = definitions.build_resources(tmp_path)
    with dg.instance_for_test() as instance:
        result = _materialize(resources, "2026-10-22", instance)
    assert not result.success


def test_labelled_predictions_join_only_outcomes_known_by_now(tmp_path):
    resources = definitions.build_resources(tmp_path)
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
        result = dg.materialize([monitor_assets.labelled_predictions], resources=resources, instance=instance)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 4 and meta["unlabelled_rows"].value == 6
    assert meta["label_delay_days_p50"].value > 2.5

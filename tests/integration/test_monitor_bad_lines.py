"""Log lines and files the monitor stage cannot ingest (a day not a partition, text a warehouse cannot store):
the sensors keep ticking and requesting the other days; each bad line is rejected with its reason and counted."""

import datetime as dt
import json

import dagster as dg
import duckdb

from platform_assets import definitions, settings
from tests.conftest import loan, loan_asset, loan_check, loan_definitions, loan_paths

TODAY = dt.datetime.now(dt.timezone.utc).date()
GOOD = (TODAY - dt.timedelta(days=3)).isoformat()
TOMORROW = (TODAY + dt.timedelta(days=1)).isoformat()


def _line(request_id, day, served_day, **extra):
    return json.dumps({"request_id": request_id, "row": 0, "served_at": f"{served_day}T10:00:00+00:00",
                       "event_ts": f"{day}T09:00:00", "model_name": "m", "model_version": "3",
                       "application_id": f"app-{request_id}", "applicant_id": 1, "feature_source": "online",
                       "income": 1000.0, "region": "north", "probability": 0.2, "latency_ms": 2.0, **extra})


def _write_log(root, folder, lines):
    path = loan_paths(root).inference / f"day={folder}" / "h-1-2026112310.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _tick(name, resources, instance, cursor):
    """One evaluation of the sensor ``name`` as the daemon does it (run requests resolved against the job's partitions)."""
    (sensor,) = [s for s in loan_definitions().sensors if s.name == name]
    defs = dg.Definitions.merge(loan_definitions(), dg.Definitions(resources=resources))
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={k: resources[k] for k in ("state", "warehouse")})
    return sensor.evaluate_tick(context)


def _ticks(name, resources, instance, count=3):
    cursor, results = None, []
    for _ in range(count):
        result = _tick(name, resources, instance, cursor)
        cursor = result.cursor
        results.append(result)
    return results


def test_log_days_that_are_not_partitions_are_reported_not_requested_and_the_good_day_is_ingested(tmp_path, capfd):
    good = [_line(f"g{i}", GOOD, GOOD) for i in range(20)]
    _write_log(tmp_path, GOOD, [*good[:10], _line("s", GOOD, GOOD, application_id="\ud800x"), *good[10:]])
    _write_log(tmp_path, TOMORROW, [_line("t", TOMORROW, TODAY.isoformat())])  # an older server's future-dated row
    _write_log(tmp_path, "9999-12-31", [_line("f", "9999-12-31", TODAY.isoformat())])
    _write_log(tmp_path, "not-a-day", [_line("n", GOOD, GOOD)])
    resources = definitions.embedded_resources(tmp_path)
    with dg.instance_for_test() as instance:
        first, second, third = _ticks("loan_default__inference_log_files", resources, instance)
        assert not first.run_requests  # first sight: maybe still being written
        assert [r.partition_key for r in second.run_requests] == [GOOD]
        assert not third.run_requests
        for skipped in (TOMORROW, "9999-12-31", "not-a-day"):
            assert skipped in third.skip_message
        assert "after today's partition" in third.skip_message and "not a day (YYYY-MM-DD)" in third.skip_message
        # The tick's log names the files, once per change of them.
        warnings = [line for line in capfd.readouterr().err.splitlines() if "not ingested" in line]
        assert len(warnings) == 3 and any(line.endswith("day=9999-12-31/h-1-2026112310.jsonl") for line in warnings)
        result = dg.materialize([loan_asset("monitor", "inference_log"), loan_check("inference_log_lines_accounted_for")],
                                resources=resources, partition_key=second.run_requests[0].partition_key,
                                instance=instance)
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["dagster/row_count"].value == 20 and meta["rejected_lines"].value == 1 and meta["lines"].value == 21
        assert all(e.passed for e in result.get_asset_check_evaluations())
    with duckdb.connect(str(settings.paths(tmp_path).warehouse), read_only=True) as con:
        ((file, line, reason),) = con.execute(
            f"SELECT _source_file, _source_line, reason FROM {loan().monitor_table('inference_log_rejects')}").fetchall()
    assert file.endswith(f"day={GOOD}/h-1-2026112310.jsonl") and line == 11
    assert reason == "application_id: a lone surrogate '\\ud800' at character 0, text a warehouse cannot store"


def test_outcome_files_of_days_that_are_not_partitions_are_reported_not_requested(tmp_path):
    folder = loan_paths(tmp_path).outcomes
    folder.mkdir(parents=True)
    header = "application_id,is_default,label_ts\n"
    (folder / f"outcomes_{GOOD}.csv").write_bytes(
        f"{header}a1,1,{GOOD}T09:00:00\na2,0,{GOOD}T09:00:00\n".encode() + b"a\xff3,1," + GOOD.encode() + b"T09:00:00\n")
    (folder / "outcomes_2099-01-01.csv").write_text(f"{header}a4,1,2099-01-01T09:00:00\n")
    (folder / "outcomes_2026-13-45.csv").write_text(f"{header}a5,1,2026-10-01T09:00:00\n")
    resources = definitions.embedded_resources(tmp_path)
    with dg.instance_for_test() as instance:
        first, second, third = _ticks("loan_default__outcome_files", resources, instance)
        assert not first.run_requests and [r.partition_key for r in second.run_requests] == [GOOD]
        assert not third.run_requests and "2099-01-01" in third.skip_message and "2026-13-45" in third.skip_message
        result = dg.materialize([loan_asset("monitor", "outcomes"), loan_check("outcome_rows_accounted_for")],
                                resources=resources, partition_key=GOOD, instance=instance)
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert meta["dagster/row_count"].value == 2 and meta["rejected_rows"].value == 1
        assert all(e.passed for e in result.get_asset_check_evaluations())

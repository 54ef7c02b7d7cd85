"""Plain monitoring functions: log lines counted and parsed, skew found, quality judged only with enough labels."""

import json

import numpy as np
import pandas as pd
import pytest

from platform_assets.monitor import drift, logs
from platform_assets.monitor.skew import feature_mismatches
from platform_assets.use_cases.loan_default.request_features import history_features

# The ids the loan-default server logs on each line.
LOAN_IDS = {"application_id": "str", "applicant_id": "int"}


def _line(request_id, day="2026-10-20", **extra):
    record = {"request_id": request_id, "row": 0, "served_at": "2026-11-23T10:00:00+00:00",
              "event_ts": f"{day}T10:00:00", "model_name": "m", "model_version": "3", "application_id": request_id,
              "applicant_id": 7, "feature_source": "online", "income": 1.0, "probability": 0.2, "latency_ms": 3.0}
    return json.dumps({**record, **extra})


def test_every_line_is_kept_or_rejected_with_its_reason(tmp_path):
    path = tmp_path / "day=2026-10-20" / "h-1-2026112310.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join([_line("a"), "{not json", _line("b", day="2026-10-21"), json.dumps({"row": 1}),
                               _line("c")]) + "\n" + _line("torn")[:40])  # a torn last line, no newline
    found = logs.read_log_file(path, "2026-10-20", LOAN_IDS)
    assert found.lines == 6 == len(found.rows) + len(found.rejected)
    assert found.rows["request_id"].tolist() == ["a", "c"] and found.rows["_source_line"].tolist() == [1, 5]
    reasons = {r["_source_line"]: r["reason"] for r in found.rejected}
    assert "not a JSON record" in reasons[2] and "not of the file's day" in reasons[3]
    assert "missing" in reasons[4] and "not a JSON record" in reasons[6]


def test_a_line_without_the_servers_metadata_or_with_an_unknown_feature_source_is_rejected(tmp_path):
    path = tmp_path / "day=2026-10-20" / "h-1-2026112310.jsonl"
    path.parent.mkdir()
    no_source = {k: v for k, v in json.loads(_line("s")).items() if k != "feature_source"}
    no_ids = {k: v for k, v in json.loads(_line("i")).items() if k != "application_id"}
    # A request that carried every model input: no ids, kept (not traffic).
    smoke = _line("r", feature_source="request", application_id=None, applicant_id=None)
    path.write_text("\n".join([json.dumps(no_source), _line("o", feature_source="offline"), json.dumps(no_ids),
                               smoke, _line("a")]) + "\n")
    found = logs.read_log_file(path, "2026-10-20", LOAN_IDS)
    assert found.lines == 5 == len(found.rows) + len(found.rejected)
    assert found.rows["request_id"].tolist() == ["r", "a"]
    assert found.rows["feature_source"].tolist() == ["request", "online"]
    assert found.rows["application_id"].isna().tolist() == [True, False]
    reasons = {r["_source_line"]: r["reason"] for r in found.rejected}
    assert reasons[1] == "missing ['feature_source']" and "'offline' is not one of" in reasons[2]
    assert reasons[3] == "missing ['application_id']"


def test_skew_is_found_when_history_is_stale_or_leaks_later_rows():
    day = pd.Timestamp("2026-10-20").timestamp()
    events, amounts = [day - 5 * 86400, day - 40 * 86400, day + 3600], [100.0, 200.0, 300.0]
    request = day + 7200
    true = history_features(events, amounts, request)
    stale = history_features(events[1:], amounts[1:], request)  # the newest earlier day not online yet
    # A store that leaks: the same-day application counted as if it were history (as of its time).
    leaked = history_features([e - 86400 if e > day else e for e in events], amounts, request)
    offline = pd.DataFrame([{"application_id": "x", **true}])
    names = list(true)
    assert feature_mismatches(pd.DataFrame([{"request_id": "r", "application_id": "x", **true}]), offline, names, "application_id").empty
    for served in (stale, leaked):
        found = feature_mismatches(pd.DataFrame([{"request_id": "r", "application_id": "x", **served}]), offline, names, "application_id")
        assert "prior_applications_90d" in set(found["feature"]) and set(found["request_id"]) == {"r"}
    # Float noise of another summation order is not skew; a change in the 6th digit is.
    noisy = {**true, "prior_loan_sum_90d": true["prior_loan_sum_90d"] * (1 + 1e-12)}
    assert feature_mismatches(pd.DataFrame([{"request_id": "r", "application_id": "x", **noisy}]), offline, names, "application_id").empty
    off = {**true, "avg_prior_loan_amount_365d": true["avg_prior_loan_amount_365d"] * (1 + 1e-4)}
    assert len(feature_mismatches(pd.DataFrame([{"request_id": "r", "application_id": "x", **off}]), offline, names, "application_id")) == 1


def test_quality_needs_enough_labels_and_both_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = pd.DataFrame({"outcome": y, "probability": np.clip(y * 0.6 + rng.uniform(0, 0.4, 500), 0, 1)})
    found = drift.quality(good, min_rows=200)
    assert found["roc_auc"] > 0.9 and 0 < found["brier"] < 0.25 and found["labelled_rows"] == 500
    assert drift.quality(good.head(100), min_rows=200)["roc_auc"] is None
    assert drift.quality(good.assign(outcome=0), min_rows=200)["roc_auc"] is None
    figures = drift.figures(None, ["a", "b"], drift.quality(good, 200), reference_auc=0.99)
    assert figures["auc_drop"] == pytest.approx(0.99 - found["roc_auc"]) and figures["drift_share"] is None


def test_reference_is_the_newest_days_of_the_training_set():
    times = pd.date_range("2026-01-01", periods=60, freq="D")
    training = pd.DataFrame({"event_timestamp": times, "x": range(60)})
    window = drift.reference_window(training, 14)
    assert len(window) == 14 and window["event_timestamp"].min() == times[46]


def test_daily_quality_is_per_day_and_needs_enough_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    labelled = pd.DataFrame({"_partition": ["2026-10-01"] * 150 + ["2026-10-02"] * 120 + ["2026-10-03"] * 30,
                             "outcome": y, "probability": np.where(y == 1, 0.8, 0.2)})
    labelled.loc[150:269, "probability"] = rng.uniform(size=120)  # day 2: no skill
    daily = drift.daily_quality(labelled, min_rows=100)
    assert daily["2026-10-01"] == {"rows": 150, "roc_auc": 1.0}
    assert 0.35 < daily["2026-10-02"]["roc_auc"] < 0.65
    assert daily["2026-10-03"] == {"rows": 30, "roc_auc": None}  # too few labels to judge


def test_a_day_ingested_from_the_same_files_is_known_and_a_changed_file_is_not(tmp_path):
    import datetime as dt

    import duckdb

    day_dir = tmp_path / "day=2026-10-01"
    day_dir.mkdir()
    line = {"request_id": "r1", "row": 0, "served_at": "2026-10-01T10:00:00+00:00",
            "event_ts": "2026-10-01T10:00:00", "model_name": "m", "model_version": "1", "probability": 0.2}
    (day_dir / "h-1-2026100110.jsonl").write_text(json.dumps(line) + "\n")
    con = duckdb.connect()
    assert not logs.unchanged_since_ingestion(con, tmp_path, "2026-10-01", "monitor")  # nothing ingested yet
    files = [logs.read_log_file(p, "2026-10-01", LOAN_IDS) for p in logs.day_files(tmp_path, "2026-10-01")]
    logs.write_day(con, "2026-10-01", files, dt.datetime(2026, 10, 2), "monitor")
    assert logs.unchanged_since_ingestion(con, tmp_path, "2026-10-01", "monitor")
    with open(day_dir / "h-1-2026100110.jsonl", "a") as f:
        f.write(json.dumps({**line, "request_id": "r2"}) + "\n")
    assert not logs.unchanged_since_ingestion(con, tmp_path, "2026-10-01", "monitor")  # grew since: ingest again


def test_lines_of_days_that_are_not_partitions_or_with_text_a_warehouse_cannot_store_are_rejected_and_counted(tmp_path):
    import datetime as dt

    import duckdb

    path = tmp_path / "day=2026-10-20" / "h-1-2026112310.jsonl"
    path.parent.mkdir()
    lines = [
        _line("a"),
        _line("tomorrow", event_ts="2026-11-24T09:00:00"),  # served 2026-11-23: an event after it
        _line("far", event_ts="9999-12-31T00:00:00"),
        _line("early", event_ts="2024-06-01T00:00:00"),  # before the partitions' start, in a good day's file
        _line("surrogate", application_id="\ud800x"),  # json.dumps writes the escape \ud800
        _line("bytes", region="north").replace('"north"', '"n\udcffrth"'),  # a byte 0xff that is not UTF-8
        _line("served later", served_at="2026-11-24T00:00:00+00:00"),  # served after today (2026-11-23)
        _line("bad time", event_ts="2026-10-20 at noon"),
        _line("bad row", row="0"),
        _line("bad id", applicant_id="seven"),
        _line("nul", region="x\x00y"),  # DuckDB stores NUL: kept
        _line("skew", event_ts="2026-10-20T10:04:00", served_at="2026-10-20T10:00:00+00:00",
              applicant_id=7.0),  # within the clock skew the server accepts; an id an older server wrote as 7.0
        _line("b"),
    ]
    assert "\\ud800x" in lines[4]
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    found = logs.read_log_file(path, "2026-10-20", LOAN_IDS, today=dt.date(2026, 11, 23))
    assert found.lines == 13 == len(found.rows) + len(found.rejected)
    assert found.rows["request_id"].tolist() == ["a", "nul", "skew", "b"]
    reasons = {r["_source_line"]: r["reason"] for r in found.rejected}
    assert reasons == {
        2: "event_ts: '2026-11-24T09:00:00' is after it was served ('2026-11-23T10:00:00+00:00')",
        3: "event_ts: '9999-12-31T00:00:00' is after it was served ('2026-11-23T10:00:00+00:00')",
        4: "event_ts '2024-06-01T00:00:00' is not of the file's day 2026-10-20",
        5: "application_id: a lone surrogate '\\ud800' at character 0, text a warehouse cannot store",
        6: f"not UTF-8 text: byte 0xff at column {lines[5].index(chr(0xDCFF)) + 1}",
        7: "served_at: '2026-11-24T00:00:00+00:00' is after today (2026-11-23)",
        8: "event_ts: '2026-10-20 at noon' is not an ISO time",
        9: "row: '0' is not a row number",
        10: "applicant_id: 'seven' is not a 64-bit integer id",
    }
    con = duckdb.connect()
    counts = logs.write_day(con, "2026-10-20", [found], dt.datetime(2026, 11, 23), "monitor")
    assert counts == {"lines": 13, "rows": 4, "rejected": 9}
    assert con.execute("SELECT region FROM monitor.inference_log WHERE request_id = 'nul'").fetchone()[0] == "x\x00y"
    assert con.execute("SELECT count(*) FROM monitor.inference_log_rejects WHERE reason LIKE '%surrogate%'"
                       ).fetchone()[0] == 1


def test_a_file_named_for_a_day_after_it_was_served_has_every_line_rejected_once_that_day_comes(tmp_path):
    import datetime as dt

    # An older server filed a row dated tomorrow under tomorrow's day: once that day is a partition, it is read.
    path = tmp_path / "day=2026-11-24" / "h-1-2026112310.jsonl"
    path.parent.mkdir()
    path.write_text(_line("t", day="2026-11-24") + "\n")
    found = logs.read_log_file(path, "2026-11-24", LOAN_IDS, today=dt.date(2026, 11, 24))
    assert len(found.rows) == 0 and found.lines == 1
    assert found.rejected[0]["reason"] == "event_ts: '2026-11-24T10:00:00' is after it was served ('2026-11-23T10:00:00+00:00')"


def test_a_field_name_with_a_quote_becomes_a_column_not_sql(tmp_path):
    import datetime as dt

    import duckdb

    con = duckdb.connect()
    for number, extra in enumerate([{}, {'x"); DROP TABLE monitor.inference_log; --': 1.0}]):
        path = tmp_path / f"h-{number}.jsonl"
        path.write_text(_line(f"r{number}", **extra) + "\n")
        found = logs.read_log_file(path, "2026-10-20", LOAN_IDS, today=dt.date(2026, 11, 23))
        logs.write_day(con, "2026-10-20", [found], dt.datetime(2026, 11, 23), "monitor")
    assert con.execute("SELECT count(*) FROM monitor.inference_log").fetchone()[0] == 1


def test_a_files_day_is_a_partition_only_when_it_is_a_day_from_the_first_through_today():
    from platform_assets.monitor.arrivals import partition_problem

    assert partition_problem("2026-10-20", "2025-01-01", "2026-12-02") is None
    assert partition_problem("2026-12-03", "2025-01-01", "2026-12-02") == "after today's partition 2026-12-02"
    assert partition_problem("2024-12-31", "2025-01-01", "2026-12-02") == "before the first partition 2025-01-01"
    for name in ("9999-12-31x", "20261020", "2026-13-45", "garbage", "\udcff"):
        assert partition_problem(name, "2025-01-01", "2026-12-02") == "not a day (YYYY-MM-DD)"


def test_a_model_input_of_another_kind_is_rejected_naming_the_field_and_the_day_still_ingests(tmp_path):
    """Text where the other lines (or the warehouse) hold numbers, or an array, is a rejected line, not a failed day."""
    import datetime as dt

    import duckdb

    today = dt.date(2026, 11, 23)
    con = duckdb.connect()
    first = tmp_path / "h-1.jsonl"
    first.write_text("\n".join([_line("a"), _line("b", income="abc"), _line("c", income=[1, 2]), _line("d")]) + "\n")
    found = logs.read_log_file(first, "2026-10-20", LOAN_IDS, today=today)
    assert found.rows["request_id"].tolist() == ["a", "d"]
    reasons = {r["_source_line"]: r["reason"] for r in found.rejected}
    assert reasons[2] == "income: text 'abc' where the file's other lines have a number"
    assert reasons[3].startswith("income: array or object [1, 2] is not a logged value")
    assert logs.write_day(con, "2026-10-20", [found], dt.datetime(2026, 11, 23), "monitor") == \
        {"lines": 4, "rows": 2, "rejected": 2}
    # A later day's file holds text throughout where the warehouse already holds numbers: those lines are
    # rejected, the rest of the day is kept, and lines = rows + rejected still holds.
    second = tmp_path / "h-2.jsonl"
    second.write_text("\n".join([_line("e", day="2026-10-21", income="lots"),
                                 _line("f", day="2026-10-21", income="many")]) + "\n")
    third = tmp_path / "h-3.jsonl"
    third.write_text(_line("g", day="2026-10-21") + "\n")
    files = [logs.read_log_file(p, "2026-10-21", LOAN_IDS, today=today) for p in (second, third)]
    assert logs.write_day(con, "2026-10-21", files, dt.datetime(2026, 11, 23), "monitor") == \
        {"lines": 3, "rows": 1, "rejected": 2}
    assert con.execute("SELECT request_id FROM monitor.inference_log WHERE _partition = '2026-10-21'").fetchall() == \
        [("g",)]
    recorded = con.execute("SELECT reason FROM monitor.inference_log_rejects WHERE _partition = '2026-10-21' "
                           "ORDER BY _source_line").fetchall()
    assert recorded == [("income: 'lots' where the warehouse holds numbers (DOUBLE)",),
                        ("income: 'many' where the warehouse holds numbers (DOUBLE)",)]
    assert con.execute("SELECT sum(rows), sum(rejected) FROM monitor.inference_log_files "
                       "WHERE _partition = '2026-10-21'").fetchone() == (1, 2)

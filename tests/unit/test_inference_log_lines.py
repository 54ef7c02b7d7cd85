"""The model server's inference-log lines: the same JSON as one ``json.dumps`` per row, strict about NaN."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SERVING = Path(__file__).resolve().parents[2] / "deploy" / "serving"
spec = importlib.util.spec_from_file_location("inference_log", SERVING / "inference_log.py")
inference_log = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inference_log)


def _rows(same: dict, each: dict, rows: int) -> list[dict]:
    return [{**same, **{k: v[r] for k, v in each.items()}} for r in range(rows)]


def test_lines_read_back_as_the_rows_they_encode():
    same = {"request_id": "r-50%-%s", "served_at": "2026-12-01T10:00:00+00:00", "model_version": "3",
            "latency_ms": 1.25, "role": None}
    each = {"row": [0, 1, 2], "event_ts": ["2026-11-30T23:59:59", "2026-12-01T00:00:00", "2026-12-01T00:00:00"],
            "customer_id": [None, None, None], "income": [1e-300, -0.0, 0.1 + 0.2],
            "region": ["north", 'q"uote\\', "éast,{}"], "open_loans": [0, 2**70, -3], "probability": [0.5, 1.0, 0.0],
            "flag": [True, False, None]}
    lines = inference_log.encode_rows(3, same, each)
    assert [json.loads(line) for line in lines] == _rows(same, each, 3)
    assert all("\n" not in line for line in lines)


def test_a_one_row_request_is_one_line_that_reads_back_as_its_row():
    """One row is the common request and has its own faster encoding: the same record either way."""
    same = {"request_id": "r-50%-%s", "latency_ms": 1.25, "role": None, "model_version": "3"}
    for each in ({"row": [0], "income": [1e-300], "region": ["éast,{}\"q"], "flag": [True], "id": [None]},
                 {"row": [0], "open_loans": [2**70]},  # beyond 64 bits
                 {"row": [0], "customer_id": ["\ud800x"]}):  # a lone surrogate: escaped, as json.dumps does
        [line] = inference_log.encode_rows(1, same, each)
        assert json.loads(line) == _rows(same, each, 1)[0] and "\n" not in line
    with pytest.raises(ValueError, match="2 values for 1 rows"):
        inference_log.encode_rows(1, {}, {"row": [0, 1]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_is_an_error_not_a_token(bad):
    with pytest.raises(ValueError):
        inference_log.encode_rows(2, {"model_version": "1"}, {"income": [1.0, bad]})
    with pytest.raises(ValueError):
        inference_log.encode_rows(1, {"latency_ms": bad}, {"row": [0]})
    with pytest.raises(ValueError):
        inference_log.encode_rows(1, {"model_version": "1"}, {"income": [bad]})


def test_a_column_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="2 values for 3 rows"):
        inference_log.encode_rows(3, {}, {"row": [0, 1]})


def test_rows_of_two_event_days_go_to_two_files_and_nothing_is_lost(tmp_path):
    import datetime as dt

    log = inference_log.InferenceLog(tmp_path)
    served = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)
    log.write(3, {"request_id": "a"}, {"row": [0, 1, 2],
                                        "event_ts": ["2026-11-30T23:00:00", "2026-12-01T01:00:00", "2026-11-30T22:00:00"]},
              served)
    files = sorted(tmp_path.glob("day=*/*.jsonl"))
    assert [f.parent.name for f in files] == ["day=2026-11-30", "day=2026-12-01"]
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["row"] for r in rows) == [0, 1, 2]
    with pytest.raises(inference_log.InferenceLogError):
        log.write(1, {"request_id": "b", "event_ts": "2026-12-01T00:00:00"}, {"x": [math.nan]}, served)
    assert sum(len(f.read_text().splitlines()) for f in files) == 3  # the failed write added nothing


def test_a_row_dated_after_the_day_it_is_served_or_not_dated_goes_to_the_served_days_file_and_is_rejected_there(tmp_path):
    import datetime as dt

    from platform_assets.monitor import logs

    log = inference_log.InferenceLog(tmp_path)
    served = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)
    events = ["2026-11-30T23:00:00", "2026-12-01T10:30:00", "9999-12-31T00:00:00", "../../escape",
              "2026-12-01T01:00:00", "2026-12-01T10:04:00"]  # the last within the clock skew: kept
    same = {"request_id": "q", "served_at": served.isoformat(), "model_name": "m", "model_version": "1",
            "feature_source": "online", "latency_ms": 1.0}
    each = {"row": list(range(6)), "event_ts": events, "application_id": ["a", "b", "c", "d", "\ud800x", "f"],
            "applicant_id": [1, 2, 3, 4, 5, 6], "probability": [0.5] * 6}
    log.write(6, same, each, served)
    folders = sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*.jsonl"))
    assert folders == ["day=2026-11-30", "day=2026-12-01"]  # never a day not yet come, never a path from the text
    found = logs.read_log_file(logs.day_files(tmp_path, "2026-12-01")[0], "2026-12-01",
                               {"application_id": "str", "applicant_id": "int"}, today=dt.date(2026, 12, 1))
    assert found.lines == 5 and found.rows["row"].tolist() == [5]
    assert [r["reason"].split(":")[0] for r in found.rejected] == ["event_ts", "event_ts", "event_ts", "application_id"]
    assert "after it was served ('2026-12-01T10:00:00+00:00')" in found.rejected[1]["reason"]
    assert "'../../escape' is not an ISO time" in found.rejected[2]["reason"]
    assert "lone surrogate" in found.rejected[3]["reason"]


def test_an_event_just_after_midnight_within_the_clock_skew_keeps_its_own_day():
    import datetime as dt

    served = dt.datetime(2026, 12, 1, 23, 58, tzinfo=dt.timezone.utc)
    assert inference_log.file_day("2026-12-02T00:02:00", served) == "2026-12-02"
    assert inference_log.file_day("2026-12-02T00:04:00+01:00", served) == "2026-12-01"  # 23:04 UTC
    assert inference_log.file_day("2026-12-02T00:10:00", served) == "2026-12-01"  # beyond it: the served day
    assert inference_log.file_day(None, served) == "2026-12-01"

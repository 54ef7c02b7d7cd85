"""The closed loop's decisions: when drift asks for a retrain (once per episode), when log files are settled, alerts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from platform_assets import alerts
from platform_assets.deploy.serving import free_port
from platform_assets.features.training_set import training_window
from platform_assets.monitor.retrain import decide_retrain, quality_onset
from platform_assets.defs.monitor.sensors import settled_day_requests
from platform_assets.monitor.arrivals import settled_days

THRESHOLDS = dict(drift_share=0.3, auc_drop=0.05, cooldown_days=7)


def _report(day, share=0.1, drop=0.0, predictions=False, version="3", daily=None, reference=0.95):
    return {"drift_share": share, "auc_drop": drop, "prediction_drifted": predictions, "window_end": day,
            "model_version": version, "daily_quality": daily or {}, "reference_roc_auc": reference}


def test_no_signal_no_retrain_and_each_signal_asks_for_one():
    decision = decide_retrain(_report("2026-10-01"), None, **THRESHOLDS)
    assert not decision.request and decision.reason == "no drift or quality signal"
    assert decide_retrain(_report("2026-10-01", share=None, drop=None), None, **THRESHOLDS).request is False
    for report in (_report("2026-10-01", share=0.4), _report("2026-10-01", drop=0.08),
                   _report("2026-10-01", predictions=True)):
        decision = decide_retrain(report, None, **THRESHOLDS)
        assert decision.request and decision.reason and decision.since is None  # no onset: all history


def _daily(aucs, rows=500):
    return {f"2026-10-{i + 1:02d}": {"rows": rows, "roc_auc": auc} for i, auc in enumerate(aucs)}


def test_the_onset_is_the_first_day_of_the_newest_run_of_decayed_days():
    assert quality_onset(_daily([0.95, 0.94, 0.75, 0.74]), below=0.9) == "2026-10-03"
    assert quality_onset(_daily([0.7, 0.95, 0.75, None, 0.74]), below=0.9) == "2026-10-03"  # a day without AUC
    assert quality_onset(_daily([0.95, 0.96]), below=0.9) is None
    assert quality_onset(_daily([0.75, 0.95]), below=0.9) is None  # recovered: no onset now


def test_a_quality_drop_waits_for_labelled_rows_since_its_onset_then_trains_on_those_days():
    daily = _daily([0.95, 0.95, 0.74, 0.73], rows=400)
    early = decide_retrain(_report("2026-10-04", drop=0.08, daily=daily), None, **THRESHOLDS, min_rows_since=1000)
    assert not early.request and early.waiting and early.since == "2026-10-03" and "800 of 1000" in early.reason
    daily["2026-10-05"] = {"rows": 400, "roc_auc": 0.75}
    later = decide_retrain(_report("2026-10-05", drop=0.09, daily=daily), None, **THRESHOLDS, min_rows_since=1000)
    assert later.request and later.since == "2026-10-03" and "1200 labelled rows" in later.reason
    # Input drift alone keeps all history: the relation did not move.
    assert decide_retrain(_report("2026-10-05", share=0.6, daily=daily), None, **THRESHOLDS).since is None


def test_the_training_window_is_requested_kept_or_reset():
    assert training_window("2026-10-03", None) == "2026-10-03"
    assert training_window("", "2026-10-03") == "2026-10-03"  # a later retrain keeps the drift's window
    assert training_window("all", "2026-10-03") is None
    assert training_window("", None) is None
    with pytest.raises(ValueError, match="not a day"):
        training_window("last week", None)


def test_one_drift_episode_gives_one_retrain():
    """Daily reports of the same episode: the first asks, the next six (within the cool-down) do not."""
    last, requested = None, []
    for day in range(1, 15):
        report = _report(f"2026-10-{day:02d}", share=0.5)
        if decide_retrain(report, last, **THRESHOLDS).request:
            last = report
            requested.append(day)
    assert requested == [1, 8]  # a drift that lasts past the cool-down asks again, once a week


def test_settled_day_requests_ask_once_per_settled_change_and_skip_days_already_held():
    import dagster as dg

    cursor = None

    def tick(now, held=None):
        nonlocal cursor
        context = dg.build_sensor_context(cursor=cursor)
        requests = settled_day_requests(context, now, "outcome file", "outcomes:", held)
        cursor = context.cursor
        return [(r.partition_key, r.run_key) for r in requests]

    assert tick({"2026-09-01": "a"}) == []  # first sight
    assert tick({"2026-09-01": "a"}) == [("2026-09-01", "outcomes:2026-09-01:a")]
    assert tick({"2026-09-01": "a"}) == []  # asked for already
    assert tick({"2026-09-01": "b"}) == [] and tick({"2026-09-01": "b"}) == [("2026-09-01", "outcomes:2026-09-01:b")]
    assert tick({"2024-01-01": "c"}) == [] and tick({"2024-01-01": "c"}) == []  # before the first partition
    held = []
    assert tick({"2026-09-02": "d"}, held.append) == [] and tick({"2026-09-02": "d"}, lambda d: held.append(d) or True) == []
    assert held == ["2026-09-02"] and tick({"2026-09-02": "d"}) == []  # held: recorded as ingested, no run


def test_settled_days_need_two_equal_ticks_and_a_change_since_ingestion():
    assert settled_days({"d1": "a"}, {}, {}) == []  # first sight: maybe still being written
    assert settled_days({"d1": "a"}, {"d1": "a"}, {}) == ["d1"]
    assert settled_days({"d1": "a"}, {"d1": "a"}, {"d1": "a"}) == []  # already ingested as it is
    assert settled_days({"d1": "b"}, {"d1": "a"}, {"d1": "a"}) == []  # still growing
    assert settled_days({"d1": "b"}, {"d1": "b"}, {"d1": "a"}) == ["d1"]  # grew and settled: again


def test_an_alert_is_a_log_line_and_a_webhook_post_and_a_dead_webhook_is_not_an_error(monkeypatch, caplog):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(alerts.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_address[1]}/hook")
        with caplog.at_level("WARNING", logger="platform.alerts"):
            sent = alerts.alert("gate_failed", "the challenger failed the gate", run_id="r1")
        assert sent["webhook"] == "sent"
        assert received[0]["alert"] == "gate_failed" and received[0]["run_id"] == "r1" and "[gate_failed]" in received[0]["text"]
        assert json.loads(caplog.records[-1].getMessage())["alert"] == "gate_failed"
    finally:
        server.shutdown()
    monkeypatch.setenv(alerts.WEBHOOK_ENV, f"http://127.0.0.1:{free_port()}/nobody")
    assert alerts.alert("drift", "x", timeout_s=0.5)["webhook"].startswith("failed")

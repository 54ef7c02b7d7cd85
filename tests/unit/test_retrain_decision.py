"""The closed loop's decisions: when drift asks for a retrain (once per episode), when log files are settled, alerts."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from platform_assets import alerts
from platform_assets.deploy.serving import free_port
from platform_assets.monitor.sensors import decide_retrain, settled_days

THRESHOLDS = dict(drift_share=0.3, auc_drop=0.05, cooldown_days=7)


def _report(day, share=0.1, drop=0.0, predictions=False, version="3"):
    return {"drift_share": share, "auc_drop": drop, "prediction_drifted": predictions, "window_end": day,
            "model_version": version}


def test_no_signal_no_retrain_and_each_signal_asks_for_one():
    assert decide_retrain(_report("2026-10-01"), None, **THRESHOLDS) == (False, "no drift or quality signal")
    assert decide_retrain(_report("2026-10-01", share=None, drop=None), None, **THRESHOLDS)[0] is False
    for report in (_report("2026-10-01", share=0.4), _report("2026-10-01", drop=0.08),
                   _report("2026-10-01", predictions=True)):
        request, reason = decide_retrain(report, None, **THRESHOLDS)
        assert request and reason


def test_one_drift_episode_gives_one_retrain():
    """Daily reports of the same episode: the first asks, the next six (within the cool-down) do not."""
    last, requested = None, []
    for day in range(1, 15):
        report = _report(f"2026-10-{day:02d}", share=0.5)
        request, _ = decide_retrain(report, last, **THRESHOLDS)
        if request:
            last = report
            requested.append(day)
    assert requested == [1, 8]  # a drift that lasts past the cool-down asks again, once a week


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

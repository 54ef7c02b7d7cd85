"""Serving as callers use it: application fields and ids in, history looked up, every answer logged.

One real model server (two gunicorn workers, from the serving environment) for
the module, reading history from a stand-in feature server that answers in
Feast's ``/get-online-features`` format; the Feast feature server itself is
tested against the SDK in test_feature_store.py.
"""

import datetime as dt
import glob
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import torch

from platform_assets.deploy.serving import (
    PREDICT_PATH,
    free_port,
    start_model_server,
    stop_model_server,
    wait_until_healthy,
)
from platform_assets.use_cases.loan_default.request_features import DAY_S, derived_features, history_features
from platform_assets.declared import use_case
from platform_assets.traffic import send_requests

LOAN = use_case("loan_default").source
from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet, load_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
NUMERIC = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years", "num_open_accounts",
           "num_delinquencies", "debt_to_income", "loan_to_income", "payment_to_monthly_income",
           "prior_applications_90d", "prior_applications_365d", "avg_prior_loan_amount_365d",
           "days_since_last_application"]
REGIONS = ["north", "south", "east", "west", "central"]
DAY = dt.datetime(2026, 10, 20)
DAY_EPOCH = DAY.replace(tzinfo=dt.timezone.utc).timestamp()

pytestmark = pytest.mark.skipif(
    not SERVING_PYTHON.exists(),
    reason=f"serving environment (seldon-core) missing at {SERVING_PYTHON}: run `make install`",
)


def _bundle(directory: Path) -> None:
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({name: rng.gamma(2.0, 2.0, 300) for name in NUMERIC}).assign(region=rng.choice(REGIONS, 300))
    torch.manual_seed(0)
    pre = Preprocessor(numeric=NUMERIC, categorical=["region"]).fit(rows)
    ModelBundle(TabularNet(pre.output_dim, (16,), 0.0), pre, {"hidden": [16], "dropout": 0.0},
                {"model_name": "loan", "model_version": "3"}).save(directory)


def _activity(applicant: int) -> tuple[list[float], list[float]]:
    """Each applicant's applications: some on earlier days, one the same day, one later (never counted)."""
    rng = np.random.default_rng(applicant)
    earlier = sorted(DAY_EPOCH - rng.uniform(0.5, 400, size=applicant % 5) * DAY_S)
    times = [*earlier, DAY_EPOCH + 3600.0, DAY_EPOCH + 5 * DAY_S]
    return [float(t) for t in times], [float(a) for a in rng.uniform(1000, 20000, size=len(times)).round(2)]


def _without_newest_earlier(times: list[float], amounts: list[float]) -> tuple[list[float], list[float]]:
    earlier = [i for i, t in enumerate(times) if t < DAY_EPOCH]
    keep = [i for i in range(len(times)) if not earlier or i != earlier[-1]]
    return [times[i] for i in keep], [amounts[i] for i in keep]


class FeatureServer:
    """Answers /get-online-features like Feast's feature server; ``down`` makes it answer 500."""

    def __init__(self):
        self.down = False
        self.stale = False  # answers without each applicant's newest earlier application (a day not materialized)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if owner.down:
                    self.send_response(500)
                    self.end_headers()
                    return
                ids = body["entities"]["applicant_id"]
                found = [_activity(a) if a != 1 else (None, None) for a in ids]
                if owner.stale:
                    found = [_without_newest_earlier(*f) if f[0] else f for f in found]
                results = [
                    {"values": ids, "statuses": ["PRESENT"] * len(ids), "event_timestamps": ["1970-01-01T00:00:00Z"] * len(ids)},
                    {"values": [f[0] for f in found], "statuses": ["PRESENT"] * len(ids), "event_timestamps": []},
                    {"values": [f[1] for f in found], "statuses": ["PRESENT"] * len(ids), "event_timestamps": []},
                ]
                out = json.dumps({"metadata": {"feature_names": ["applicant_id", "recent_application_ts",
                                                                 "recent_loan_amounts"]}, "results": results}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served_traffic")
    _bundle(tmp / "bundle")
    features = FeatureServer()
    record_path = tmp / "server.json"
    process = start_model_server(
        python=SERVING_PYTHON, model_dir=tmp / "bundle", use_case="loan_default", model_name="loan", model_version="3", http_port=free_port(),
        workdir=tmp, log_path=tmp / "server.log", record_path=record_path, feature_server_url=features.url,
        inference_log_dir=tmp / "inference", workers=2,
    )
    try:
        wait_until_healthy(process, timeout_s=90.0)
        yield process.url, tmp / "inference", features, load_bundle(tmp / "bundle")
    finally:
        stop_model_server(record_path)
        features.httpd.shutdown()


def _applications(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "application_id": [f"req-{seed}-{i}" for i in range(n)],
        "applicant_id": rng.integers(100, 140, n),
        "application_ts": [(DAY + dt.timedelta(seconds=int(s))).isoformat() for s in rng.integers(7200, 86_000, n)],
        "income": rng.uniform(20_000, 90_000, n).round(2), "loan_amount": rng.uniform(1000, 20_000, n).round(2),
        "term_months": rng.choice([36, 60], n), "employment_years": rng.uniform(0, 20, n).round(1),
        "credit_history_years": rng.uniform(0, 30, n).round(1), "num_open_accounts": rng.integers(0, 9, n),
        "num_delinquencies": rng.integers(0, 3, n), "debt_to_income": rng.uniform(0, 0.9, n).round(3),
        "region": rng.choice(REGIONS, n),
    })


def _log_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(str(directory / "day=*" / "*.jsonl")))
            for line in Path(path).read_text().splitlines()]


def test_every_request_is_logged_once_with_the_features_it_used(serving):
    url, log_dir, _, bundle = serving
    before = len(_log_lines(log_dir))
    apps = _applications(200)
    result = send_requests(url, apps, LOAN, concurrency=8)
    assert result.answered == 200 and not result.errors
    lines = _log_lines(log_dir)[before:]
    assert len(lines) == 200
    # Exactly once each, under the id the client sent, from both workers' files.
    assert sorted(line["request_id"] for line in lines) == sorted(result.request_ids.values())
    assert len({Path(p).name.split("-")[-2] for p in glob.glob(str(log_dir / "day=*" / "*.jsonl"))}) >= 1
    logged = pd.DataFrame(lines).set_index("application_id").loc[apps["application_id"]]
    for app, line in zip(apps.itertuples(), logged.itertuples()):
        request_ts = dt.datetime.fromisoformat(app.application_ts).replace(tzinfo=dt.timezone.utc).timestamp()
        expected = {**history_features(*_activity(app.applicant_id), request_ts),
                    **derived_features(app.income, app.loan_amount, app.term_months)}
        for name in ("prior_applications_90d", "prior_applications_365d", "avg_prior_loan_amount_365d",
                     "days_since_last_application", "loan_to_income", "payment_to_monthly_income"):
            assert getattr(line, name) == pytest.approx(expected[name], rel=1e-12), name
        # Same-day and later applications are never counted: at most 4 earlier ones exist.
        assert line.prior_applications_365d <= app.applicant_id % 5
        assert line.feature_source == "online" and line.model_version == "3" and line.event_ts[:10] == "2026-10-20"
        assert line.probability == pytest.approx(result.probabilities[app.application_id], abs=1e-12)
    # Served = offline: the bundle scores the logged inputs to the same probabilities.
    offline = bundle.predict_proba({c: logged[c].to_numpy() for c in [*NUMERIC, "region"]})
    np.testing.assert_allclose(offline, logged["probability"].to_numpy(), atol=1e-6)


def test_the_skew_check_passes_on_a_current_store_and_fails_on_a_stale_one(serving):
    """Real server, real log: its served features against point-in-time ones (the full history before the day)."""
    from platform_assets.monitor.skew import feature_mismatches

    url, log_dir, features, _ = serving
    compared = ["prior_applications_90d", "prior_applications_365d", "avg_prior_loan_amount_365d",
                "days_since_last_application"]

    def served_and_offline(seed):
        apps = _applications(60, seed=seed)
        result = send_requests(url, apps, LOAN, concurrency=4)
        assert result.answered == 60
        lines = pd.DataFrame(_log_lines(log_dir))
        served = lines[lines["request_id"].isin(set(result.request_ids.values()))]
        offline = pd.DataFrame([{"application_id": a.application_id, **history_features(
            *_activity(a.applicant_id),
            dt.datetime.fromisoformat(a.application_ts).replace(tzinfo=dt.timezone.utc).timestamp())}
            for a in apps.itertuples()])
        return apps, feature_mismatches(served, offline, compared, "application_id")

    _, current = served_and_offline(seed=21)
    assert current.empty
    features.stale = True
    try:
        apps, stale = served_and_offline(seed=22)
    finally:
        features.stale = False
    with_history = set(apps.loc[apps["applicant_id"] % 5 > 0, "application_id"])
    # Every application of an applicant with earlier applications is caught; none without.
    assert set(stale["application_id"]) == with_history and len(with_history) > 10
    assert set(stale["feature"]) >= {"prior_applications_365d", "days_since_last_application"}


def test_an_applicant_unknown_to_the_store_has_no_history(serving):
    url, log_dir, _, _ = serving
    app = _applications(1, seed=5).assign(applicant_id=1)
    result = send_requests(url, app, LOAN)
    assert result.answered == 1
    line = next(l for l in _log_lines(log_dir) if l["request_id"] == result.request_ids[app["application_id"][0]])
    assert line["prior_applications_365d"] == 0.0 and line["days_since_last_application"] == -1.0


def test_caller_mistakes_get_400_and_leave_no_log_line(serving):
    url, log_dir, _, _ = serving
    before = len(_log_lines(log_dir))
    app = _applications(2, seed=7)
    body = {"data": {"names": list(app.columns), "ndarray": app.astype(object).values.tolist()}}
    body["data"]["ndarray"][1][2] = "yesterday"  # application_ts
    body["data"]["ndarray"][0][1] = "abc"  # applicant_id
    answer = requests.post(url + PREDICT_PATH, json=body, timeout=10)
    assert answer.status_code == 400
    text = answer.json()["status"]["info"]
    assert "row 0, column 'applicant_id'" in text and "row 1, column 'application_ts'" in text
    no_id = {"data": {"names": ["income"], "ndarray": [[1.0]]}}
    answer = requests.post(url + PREDICT_PATH, json=no_id, timeout=10)
    # Without its key (application_id) a request is taken as one that carries every model input: the answer
    # names the missing inputs and the key to send instead.
    info = answer.json()["status"]["info"]
    assert answer.status_code == 400 and "lacks" in info and "application_id" in info
    assert len(_log_lines(log_dir)) == before


def test_feature_server_down_gives_503_and_no_log_line(serving):
    url, log_dir, features, _ = serving
    before = len(_log_lines(log_dir))
    features.down = True
    try:
        result = send_requests(url, _applications(3, seed=9), LOAN)
    finally:
        features.down = False
    assert result.answered == 0 and result.errors == {503: 3}
    assert len(_log_lines(log_dir)) == before

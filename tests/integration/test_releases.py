"""Blue/green, a failed smoke test and a shadow, against real model servers behind the router.

Callers talk to the stable endpoint (the router) throughout; every answer is
checked, none may fail. The bundles are small networks on loan-default inputs,
sent whole (no feature server needed).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import requests
import torch

from platform_assets.declarations import use_case_to_dict
from platform_assets.deploy import release
from platform_assets.deploy.processes import group_alive, read_record
from platform_assets.deploy.serving import free_port
from platform_assets.train.network import ModelBundle, Preprocessor, TabularNet
from tests.conftest import SERVING_PYTHON, loan

pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason=f"serving environment missing at {SERVING_PYTHON}: run `make install`")
NUMERIC, CATEGORICAL = ["income", "debt_to_income", "open_loans"], ["region"]


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"income": rng.lognormal(10.9, 0.4, 40), "debt_to_income": rng.uniform(0, 1, 40),
                         "open_loans": rng.integers(0, 6, 40), "region": rng.choice(["north", "south", "east"], 40)})


@pytest.fixture(scope="module")
def served(tmp_path_factory, rows):
    """Bundles of versions 1, 2 and 3 (different weights), a serving folder and a stable port; all stopped after."""
    tmp = tmp_path_factory.mktemp("releases")
    bundles = {}
    for version in ("1", "2", "3"):
        torch.manual_seed(int(version))
        pre = Preprocessor(numeric=NUMERIC, categorical=CATEGORICAL).fit(rows)
        bundle = ModelBundle(TabularNet(pre.output_dim, (8,), 0.0), pre, {"hidden": [8], "dropout": 0.0},
                             {"model_name": "loan-default", "model_version": version})
        bundle.save(tmp / f"v{version}")
        bundles[version] = tmp / f"v{version}"
    serving_dir, port = tmp / "serving", free_port()
    yield {"tmp": tmp, "bundles": bundles, "serving": serving_dir, "port": port,
           "url": f"http://127.0.0.1:{port}"}
    release.stop_serving(serving_dir)


def _spec(served, version):
    return release.BackendSpec(
        python=SERVING_PYTHON, bundle=served["bundles"][version], use_case="loan_default",
        declaration=use_case_to_dict(loan()), model_name="loan-default", version=version, feature_repo=None,
        state_root=served["tmp"], inference_log_dir=served["tmp"] / "inference", workers=2)


def _release(served, rows, version, smoke_bundle=None, **kwargs):
    bundle = served["bundles"][smoke_bundle or version]
    return release.release(
        _spec(served, version), served["serving"], host="127.0.0.1", port=served["port"],
        smoke_test=lambda url: release.smoke_test_against_bundle(url, bundle, rows, version), log=print, **kwargs)


def _supervised_versions(served):
    """The groups of versions supervisord runs for the serving folder (the router aside)."""
    programs = served["serving"] / "supervisor" / "programs"
    return sorted(p.stem for p in programs.glob("*.conf") if p.stem != release.ROUTER_GROUP)


def _admin_url(served):
    return read_record(served["serving"] / release.ROUTER_RECORD)["admin_url"]


def _message(rows, puid=None):
    body = {"data": {"names": NUMERIC + CATEGORICAL,
                     "ndarray": [[float(r.income), float(r.debt_to_income), int(r.open_loans), r.region]
                                 for r in rows.itertuples()]}}
    return {**body, "meta": {"puid": puid}} if puid else body


def _status(served):
    return requests.get(_admin_url(served) + "/-/routes", timeout=5).json()


def _assert_accepted_by(served, router: bool, workers: dict) -> None:
    """That the router accepts the stable port's connections or not, and how many workers of each version do;
    waited for up to 3 s: the workers take the port over as they connect."""
    deadline = time.monotonic() + 3
    while True:
        handoff = _status(served)["handoff"]
        if (handoff["router_accepts"], handoff["workers_serving"]) == (router, workers):
            return
        assert time.monotonic() < deadline, handoff
        time.sleep(0.05)


def test_callers_see_no_failure_while_a_new_version_takes_over(served, rows):
    first = _release(served, rows, "1")
    assert first["url"] == served["url"] and first["stable"]["version"] == "1"
    # Every request goes to version 1: its two workers accept the callers' connections, with no proxy hop.
    _assert_accepted_by(served, False, {first["stable"]["url"]: 2})
    for _ in range(10):
        answer = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(1)), timeout=10)
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == answer.headers["X-Request-Id"]
    assert _status(served)["served"] == {}  # the router forwarded none of them
    answers, stop = [], threading.Event()

    def caller():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(3)),
                                            timeout=10)
                    version = response.json()["meta"]["tags"]["model_version"] if response.ok else None
                    answers.append((time.monotonic(), response.status_code, version))
                except requests.RequestException as exc:
                    answers.append((time.monotonic(), type(exc).__name__, None))

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        time.sleep(1.0)
        second = _release(served, rows, "2")
        switched = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in callers:
            thread.join()
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:5]
    versions = [v for _, _, v in answers]
    assert versions[0] == "1" and versions[-1] == "2" and set(versions) == {"1", "2"}
    assert all(v == "2" for t, _, v in answers if t > switched + 0.1)  # after the switch only the new answers
    assert second["stable"]["version"] == "2" and [h["version"] for h in second["history"]] == ["1"]
    assert not group_alive(first["stable"]["pid"])  # the old version was drained and stopped
    _assert_accepted_by(served, False, {second["stable"]["url"]: 2})
    assert _supervised_versions(served) == [second["stable"]["group"]]  # nothing else left running


def test_connections_the_model_server_closed_while_idle_cost_callers_nothing(served, rows):
    """The router's kept-alive upstream connections outlive the server's 5 s keep-alive: none may become a 502."""
    from concurrent.futures import ThreadPoolExecutor

    def burst():
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda _: requests.post(served["url"] + "/api/v1.0/predictions",
                                                         json=_message(rows.head(1)), timeout=10).status_code,
                                 range(64)))

    assert set(burst()) == {200}  # 16 upstream connections now idle in the router
    time.sleep(6)  # the model server closes them
    assert set(burst()) == {200}


def test_the_routers_request_id_is_the_id_the_rows_are_logged_under(served, rows):
    """A request without ``meta.puid`` is logged under the X-Request-Id the router answers with."""
    answer = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(2)), timeout=10)
    request_id = answer.headers["X-Request-Id"]
    assert answer.status_code == 200 and answer.json()["meta"]["puid"] == request_id
    lines = [json.loads(line) for f in (served["tmp"] / "inference").glob("day=*/*.jsonl")
             for line in f.read_text().splitlines()]
    assert [line["row"] for line in lines if line["request_id"] == request_id] == [0, 1]
    own = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(1), "caller-id-7"),
                        headers={"X-Request-Id": "other-id"}, timeout=10)
    assert own.json()["meta"]["puid"] == "caller-id-7"  # the caller's own meta.puid comes first


def test_caller_mistakes_still_get_400_naming_the_field_through_the_stable_endpoint(served, rows):
    message = _message(rows.head(2))
    message["data"]["ndarray"][1][0] = "lots"  # text in a number column
    answer = requests.post(served["url"] + "/api/v1.0/predictions", json=message, timeout=10)
    assert answer.status_code == 400 and answer.json()["status"]["reason"] == "MICROSERVICE_BAD_DATA"
    assert "row 1" in answer.json()["status"]["info"] and "income" in answer.json()["status"]["info"]
    truncated = requests.post(served["url"] + "/api/v1.0/predictions", data=b'{"data": {"names": [',
                              headers={"Content-Type": "application/json"}, timeout=10)
    assert truncated.status_code == 400


def test_a_version_failing_its_smoke_test_never_serves_and_the_old_one_stays(served, rows):
    before = release.read_release(served["serving"])
    assert before["stable"]["version"] == "2"
    # Version 3 judged against version 1's bundle: its answers differ, as a broken build's would.
    with pytest.raises(release.ReleaseError, match="version 3 failed its smoke test: served predictions differ.*"
                                                   "version 2 keeps serving"):
        _release(served, rows, "3", smoke_bundle="1")
    after = release.read_release(served["serving"])
    assert after == before
    answer = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(2)), timeout=10).json()
    assert answer["meta"]["tags"]["model_version"] == "2"
    assert _supervised_versions(served) == [before["stable"]["group"]]  # version 3 was stopped


def test_a_shadow_gets_every_request_logged_under_its_id_and_callers_see_only_the_stable_answer(served, rows):
    shadowed = _release(served, rows, "3", role="shadow")
    assert shadowed["shadow"]["version"] == "3" and shadowed["stable"]["version"] == "2"
    _assert_accepted_by(served, True, {})  # the router took the port back to copy requests to the shadow
    puids = [uuid.uuid4().hex for _ in range(20)]
    seen = set()
    for puid in puids:
        answer = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(2), puid),
                               timeout=10).json()
        seen.add(answer["meta"]["tags"]["model_version"])
        assert answer["meta"]["puid"] == puid
    assert seen == {"2"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = requests.get(_admin_url(served) + "/-/routes", timeout=5).json()
        if status["shadow"].get("answered", 0) >= len(puids) + 0 and not status["shadow"].get("pending"):
            break
        time.sleep(0.2)

    def logged(folder):
        lines = [json.loads(line) for f in folder.glob("day=*/*.jsonl") for line in f.read_text().splitlines()]
        return {(r["request_id"], r["row"]): r for r in lines if r["request_id"] in puids}

    stable, shadow = logged(served["tmp"] / "inference"), logged(served["tmp"] / "inference" / "shadow")
    assert set(stable) == set(shadow) and len(stable) == 2 * len(puids)
    assert {r["model_version"] for r in stable.values()} == {"2"} and {r["role"] for r in stable.values()} == {"stable"}
    assert {r["model_version"] for r in shadow.values()} == {"3"} and {r["role"] for r in shadow.values()} == {"shadow"}
    assert any(abs(stable[k]["probability"] - shadow[k]["probability"]) > 1e-6 for k in stable)  # two models
    ended = release.end_role(served["serving"], "shadow", host="127.0.0.1", port=served["port"])
    assert ended["shadow"] is None and not group_alive(shadowed["shadow"]["pid"])
    _assert_accepted_by(served, False, {ended["stable"]["url"]: 2})  # and handed it back


def test_a_rollback_returns_the_version_that_served_before(served, rows):
    previous = release.previous_version(served["serving"])
    assert previous["version"] == "1"
    started = time.monotonic()
    back = _release(served, rows, previous["version"], rollback=True)
    took = time.monotonic() - started
    assert back["stable"]["version"] == "1" and back["history"] == [] and back["rolled_back"] == ["2"]
    answer = requests.post(served["url"] + "/api/v1.0/predictions", json=_message(rows.head(2)), timeout=10).json()
    assert answer["meta"]["tags"]["model_version"] == "1"
    print(f"rollback took {took:.1f} s")
    with pytest.raises(release.ReleaseError, match="nothing to roll back to"):
        release.previous_version(served["serving"])


def test_stopping_serving_leaves_no_process_and_no_record(served, rows):
    from platform_assets.deploy.supervision import Supervisor

    state = release.read_release(served["serving"])
    supervisor = Supervisor(served["serving"])
    router_pid, supervisord_pid = supervisor.pid(release.ROUTER_GROUP, "router"), supervisor.running()["pid"]
    admin = _admin_url(served)
    stopped = release.stop_serving(served["serving"])
    assert "router" in stopped and not group_alive(router_pid) and not group_alive(state["stable"]["pid"])
    assert not group_alive(supervisord_pid) and not _supervised_versions(served)
    assert release.read_release(served["serving"])["stable"] is None
    for url in (served["url"], admin):
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/-/routes", timeout=2)

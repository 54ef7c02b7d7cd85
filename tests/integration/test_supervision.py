"""A dead server comes back by itself: kill -9 of the model server or the router under load.

Real model servers behind the real router, supervised by supervisord. Callers keep
sending requests through the stable endpoint; after each kill the service must be
back within 15 s, with no process of the killed one left over, and no caller ever
gets an answer that is not its own.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import requests

from platform_assets.deploy import release
from platform_assets.deploy.processes import free_port, group_members
from platform_assets.deploy.supervision import Program, Supervisor
from tests.conftest import SERVING_PYTHON, release_tiny_loan_model

NUMERIC, CATEGORICAL = ["income", "debt_to_income", "open_loans"], ["region"]
BACK_WITHIN_S = 15.0


def test_the_rest_of_a_killed_programs_group_is_reaped_and_the_program_restarted(tmp_path):
    """A program whose main process dies leaves no helper behind (they would hold its port) and runs again."""
    supervisor = Supervisor(tmp_path / "serving")
    port = free_port()
    code = ("import http.server, os, time\n"
            "if os.fork() == 0:\n    time.sleep(600)\n"  # a helper in the program's process group
            f"http.server.ThreadingHTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)"
            ".serve_forever()")
    try:
        supervisor.add("web", [Program("server", [sys.executable, "-c", code], dict(os.environ), tmp_path,
                                       tmp_path / "server.log")])
        url = f"http://127.0.0.1:{port}/"
        supervisor.wait_until_answers(url, "web", "server", log_path=tmp_path / "server.log", timeout_s=20, what="web")
        first = supervisor.pid("web", "server")
        assert len(group_members(first)) == 2
        os.kill(first, signal.SIGKILL)
        supervisor.wait_until_answers(url, "web", "server", log_path=tmp_path / "server.log", timeout_s=20, what="web",
                                      restarts_allowed=True)
        deadline = time.monotonic() + 5
        while group_members(first) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(first) == []  # the helper was killed with its group
        second = supervisor.pid("web", "server")
        assert second != first and len(group_members(second)) == 2
    finally:
        supervisor.shutdown()
    assert group_members(second) == []  # (zombies aside: reparented ones wait for init to reap them)


def test_a_supervisord_started_again_stops_what_the_dead_one_left_and_runs_its_programs_again(tmp_path):
    """After supervisord itself is killed (or the machine rebooted), ``ensure`` brings the same programs back."""
    supervisor = Supervisor(tmp_path / "serving")
    port = free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    url, log = f"http://127.0.0.1:{port}/", tmp_path / "server.log"
    try:
        supervisor.add("web", [Program("server", command, dict(os.environ), tmp_path, log)])
        supervisor.wait_until_answers(url, "web", "server", log_path=log, timeout_s=20, what="web")
        first, supervisord = supervisor.pid("web", "server"), supervisor.running()["pid"]
        os.kill(supervisord, signal.SIGKILL)
        time.sleep(0.5)
        assert supervisor.running() is None and group_members(first)  # nothing supervises the server now
        supervisor.ensure()
        supervisor.wait_until_answers(url, "web", "server", log_path=log, timeout_s=20, what="web")
        assert group_members(first) == [] and supervisor.pid("web", "server") != first
    finally:
        supervisor.shutdown()


pytestmark_serving = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                        reason=f"serving environment missing at {SERVING_PYTHON}: run `make install`")


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(2)
    return pd.DataFrame({"income": rng.lognormal(10.9, 0.4, 20), "debt_to_income": rng.uniform(0, 1, 20),
                         "open_loans": rng.integers(0, 6, 20), "region": rng.choice(["north", "south", "east"], 20)})


@pytest.fixture(scope="module")
def serving(tmp_path_factory, rows):
    """Version 1 released behind the router on a free port; everything stopped after."""
    tmp = tmp_path_factory.mktemp("supervised")
    record, spec, _ = release_tiny_loan_model(tmp, rows, seed=1)
    yield {"dir": tmp / "serving", "url": record["url"], "group": record["stable"]["group"], "spec": spec}
    release.stop_serving(tmp / "serving")


def _message(rows, puid):
    return {"data": {"names": NUMERIC + CATEGORICAL,
                     "ndarray": [[float(r.income), float(r.debt_to_income), int(r.open_loans), r.region]
                                 for r in rows.itertuples()]},
            "meta": {"puid": puid}}


def _outage(answers, killed_at: float) -> float | None:
    """The longest time after ``killed_at`` with no successful answer: callers either failed or waited meanwhile
    (the router holds a request while its upstream refuses connections). ``None`` if none succeeded since."""
    done = sorted(end for start, end, status, _ in answers if status == 200 and end > killed_at)
    return max(b - a for a, b in zip([killed_at, *done], done)) if done else None


def _outage_under_load(url: str, rows, kill, new_pid) -> dict:
    """Runs 4 callers against ``url``, calls ``kill`` once they are going, and measures the outage
    until the process ``new_pid()`` names (nonzero once supervisord started it) has answered for a second."""
    answers, stop = [], threading.Event()

    def caller():
        with requests.Session() as session:
            while not stop.is_set():
                puid, start = uuid.uuid4().hex, time.monotonic()
                try:
                    response = session.post(url + "/api/v1.0/predictions", json=_message(rows.head(2), puid),
                                            timeout=30)
                    own = response.json()["meta"]["puid"] == puid if response.status_code == 200 else None
                    answers.append((start, time.monotonic(), response.status_code, own))
                except (requests.RequestException, ValueError) as exc:
                    answers.append((start, time.monotonic(), type(exc).__name__, None))
                    time.sleep(0.05)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()
        kill()
        deadline, respawned = killed_at + BACK_WITHIN_S + 5, None
        # supervisord sees an exit within about a second, and until then the dead server's workers may
        # still answer: wait for the new process, then for a second of its answers.
        while time.monotonic() < deadline:
            respawned = respawned or (time.monotonic() if new_pid() else None)
            restarted = [a for a in answers if a[2] == 200 and respawned and a[0] > respawned]
            if restarted and time.monotonic() - min(a[1] for a in restarted) > 1.0:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in callers:
            thread.join()
    failed = [a for a in answers if a[1] > killed_at and a[2] != 200]
    return {"answers": answers, "failed": failed, "outage_s": _outage(answers, killed_at),
            "wrong": [a for a in answers if a[3] is False]}


@pytestmark_serving
def test_a_killed_model_server_is_back_within_seconds_with_no_orphan(serving, rows):
    supervisor = Supervisor(serving["dir"])
    before = supervisor.pid(serving["group"], "model")
    helpers = group_members(before)
    assert len(helpers) >= 3  # gunicorn master, its workers, Seldon's metrics helpers
    found = _outage_under_load(serving["url"], rows, lambda: os.kill(before, signal.SIGKILL),
                               lambda: supervisor.pid(serving["group"], "model") not in (0, before))
    print(f"model server killed: no answer for {found['outage_s']:.2f} s, {len(found['failed'])} failed requests")
    assert found["outage_s"] is not None and found["outage_s"] < BACK_WITHIN_S
    assert not found["wrong"]
    assert group_members(before) == []  # nothing of the killed server is left
    after = supervisor.pid(serving["group"], "model")
    assert after != before and len(group_members(after)) >= 3


@pytestmark_serving
def test_a_killed_router_is_back_within_seconds(serving, rows):
    supervisor = Supervisor(serving["dir"])
    before = supervisor.pid(release.ROUTER_GROUP, "router")
    found = _outage_under_load(serving["url"], rows, lambda: os.kill(before, signal.SIGKILL),
                               lambda: supervisor.pid(release.ROUTER_GROUP, "router") not in (0, before))
    print(f"router killed: no answer for {found['outage_s']:.2f} s, {len(found['failed'])} failed requests")
    assert found["outage_s"] is not None and found["outage_s"] < BACK_WITHIN_S
    assert not found["wrong"]
    assert group_members(before) == [] and supervisor.pid(release.ROUTER_GROUP, "router") != before
    assert release.router_url(serving["dir"]) == serving["url"]


def test_the_watch_sensor_starts_a_dead_supervisord_again_and_otherwise_only_reports(tmp_path):
    """``<use case>__serving_supervised`` brings the endpoint back after supervisord's own death (no re-release)."""
    import dagster as dg

    from platform_assets import settings
    from platform_assets.resources import PlatformState
    from tests.conftest import loan_definitions

    (sensor,) = [s for s in loan_definitions().sensors if s.name == "loan_default__serving_supervised"]
    state = PlatformState(root=str(tmp_path))

    def tick():
        with dg.instance_for_test() as instance:
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"state": state}))

    assert "nothing is served" in tick().skip_message
    supervisor = Supervisor(settings.paths(tmp_path).of("loan_default").serving)
    port = free_port()
    url, log = f"http://127.0.0.1:{port}/", tmp_path / "server.log"
    try:
        supervisor.add("web", [Program("server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                                  str(port)], dict(os.environ), tmp_path, log)])
        supervisor.wait_until_answers(url, "web", "server", log_path=log, timeout_s=20, what="web")
        assert "supervisord runs" in tick().skip_message
        first = supervisor.pid("web", "server")
        os.kill(supervisor.running()["pid"], signal.SIGKILL)
        time.sleep(0.5)
        assert "started again" in tick().skip_message
        supervisor.wait_until_answers(url, "web", "server", log_path=log, timeout_s=20, what="web")
        assert supervisor.pid("web", "server") != first and group_members(first) == []
        assert "supervisord runs" in tick().skip_message
    finally:
        supervisor.shutdown()
    assert "nothing is served" in tick().skip_message


def test_the_watch_sensor_alerts_once_on_a_program_that_dies_at_every_start(tmp_path, caplog):
    import logging

    import dagster as dg

    from platform_assets import settings
    from platform_assets.resources import PlatformState
    from tests.conftest import loan_definitions

    (sensor,) = [s for s in loan_definitions().sensors if s.name == "loan_default__serving_supervised"]
    state = PlatformState(root=str(tmp_path))
    supervisor = Supervisor(settings.paths(tmp_path).of("loan_default").serving)
    try:
        supervisor.add("broken", [Program("model", [sys.executable, "-c", "raise SystemExit('no bundle')"],
                                          dict(os.environ), tmp_path, tmp_path / "broken.log", start_retries=1)])
        deadline = time.monotonic() + 30
        while supervisor.info("broken", "model")["statename"] != "FATAL" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert supervisor.given_up() == ["broken:broken-model"]
        cursor, alerts = None, []
        with caplog.at_level(logging.WARNING, logger="platform.alerts"), dg.instance_for_test() as instance:
            for _ in range(2):
                result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                      resources={"state": state}))
                cursor = result.cursor
                assert "gave up on broken:broken-model" in result.skip_message
        alerts = [r.getMessage() for r in caplog.records if '"serving_down"' in r.getMessage()]
        assert len(alerts) == 1 and "died at every start" in alerts[0]
    finally:
        supervisor.shutdown()


@pytestmark_serving
def test_a_first_release_that_fails_leaves_no_supervisord_behind(serving, tmp_path):
    """Nothing served before and the new version failed: nothing is left running in the serving folder."""
    supervisor = Supervisor(tmp_path / "serving")
    with pytest.raises(release.ReleaseError, match="failed its smoke test: planted"):
        release.release(serving["spec"], tmp_path / "serving", host="127.0.0.1", port=free_port(), log=print,
                        smoke_test=lambda url: "planted")
    assert supervisor.running() is None and not supervisor.configured()
    assert not (tmp_path / "serving" / "supervisor" / "supervisord.json").exists()

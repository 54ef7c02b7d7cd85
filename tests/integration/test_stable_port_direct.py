"""The stable port handed to the model server's workers (``platform_assets/deploy/handoff.py``), over real HTTP.

While the routes send every request to one version, callers' connections are accepted by
that version's workers, not proxied by the router: the same edge cases and the same
cross-talk test as the router's (``tests/unit/test_router_http.py``) run here against a
real model server, and killing the router costs callers nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter

import aiohttp
import numpy as np
import pandas as pd
import pytest
import requests

from platform_assets.deploy import release
from platform_assets.deploy.processes import group_members, read_record
from platform_assets.deploy.supervision import Supervisor
from tests.conftest import SERVING_PYTHON, release_tiny_loan_model
from tests.unit.test_router_http import closed_within, cross_talk, pipelined, post_head, read_answer

pytestmark = pytest.mark.skipif(not SERVING_PYTHON.exists(),
                                reason=f"serving environment missing at {SERVING_PYTHON}: run `make install`")
NUMERIC, CATEGORICAL = ["income", "debt_to_income", "open_loans"], ["region"]
PREDICT = "/api/v1.0/predictions"


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
    """Version 1 released on a free port, its workers accepting the stable port; everything stopped after."""
    tmp = tmp_path_factory.mktemp("direct")
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({"income": rng.lognormal(10.9, 0.4, 20), "debt_to_income": rng.uniform(0, 1, 20),
                         "open_loans": rng.integers(0, 6, 20), "region": rng.choice(["north", "south", "east"], 20)})
    record, _, port = release_tiny_loan_model(tmp, rows, seed=1)
    admin = read_record(tmp / "serving" / release.ROUTER_RECORD)["admin_url"]
    found = {"dir": tmp / "serving", "url": record["url"], "port": port, "admin": admin, "tmp": tmp,
             "backend": record["stable"]["url"]}
    _wait_direct(found)
    yield found
    release.stop_serving(tmp / "serving")


def _status(stable) -> dict:
    return requests.get(stable["admin"] + "/-/routes", timeout=5).json()


def _wait_direct(stable, timeout_s: float = 5.0) -> None:
    """Until the version's two workers accept the stable port and the router does not.

    A router the supervisor has just restarted has a pid before it listens on its admin port: a refused
    connection counts as "not yet" until the deadline, not as a failure.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            handoff = _status(stable)["handoff"]
        except requests.ConnectionError as refused:
            handoff = repr(refused)
        else:
            if not handoff["router_accepts"] and handoff["workers_serving"] == {stable["backend"]: 2}:
                return
        assert time.monotonic() < deadline, handoff
        time.sleep(0.05)


def message(puid: str | None = None) -> dict:
    return {"data": {"names": NUMERIC + CATEGORICAL, "ndarray": [[52000.0, 0.3, 2, "north"]]},
            "meta": {"puid": puid or uuid.uuid4().hex}}


def raw_post(puid: str, *extra: str, version: str = "1.1") -> bytes:
    body = json.dumps(message(puid)).encode()
    return post_head(body, *extra, version=version) + body


def connect(stable, timeout: float = 10.0):
    import socket

    return socket.create_connection(("127.0.0.1", stable["port"]), timeout=timeout)


def test_pipelining_http_1_0_connection_close_and_half_closed_clients(stable):
    puids = [uuid.uuid4().hex for _ in range(3)]
    with connect(stable) as sock:
        assert pipelined(sock, [raw_post(p) for p in puids]) == [(200, p) for p in puids]
    for request in (raw_post("p10", version="1.0"), raw_post("pclose", "Connection: close")):
        with connect(stable) as sock:
            sock.sendall(request)
            closed, received = closed_within(sock, 5)
        assert closed and received.split()[1] == b"200"
    with connect(stable) as sock:
        sock.sendall(raw_post("half"))
        sock.shutdown(1)  # SHUT_WR: the client sends nothing more
        closed, received = closed_within(sock, 5)
    assert received.split()[1] == b"200" and b'"half"' in received


def test_expect_chunked_and_oversized_requests(stable):
    body = json.dumps(message("expect")).encode()
    with connect(stable) as sock:
        sock.sendall(post_head(body, "Expect: 100-continue"))
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 100")
        assert stream.readline() == b"\r\n"
        sock.sendall(body)
        status, fields, answer = read_answer(stream)
    assert status == 200 and json.loads(answer)["meta"]["puid"] == "expect" and fields["x-request-id"]
    chunked = requests.post(stable["url"] + PREDICT, data=iter([body[:7], body[7:]]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 200 and chunked.json()["meta"]["puid"] == "expect"
    with connect(stable) as sock:  # a declared body over the limit: refused before it is sent
        sock.sendall(post_head(b"x" * 10, "Expect: 100-continue").replace(b"Content-Length: 10",
                                                                          b"Content-Length: 70000000"))
        assert read_answer(sock.makefile("rb"))[0] == 413
    for fields in (["X-Big: " + "a" * 70_000], [f"X-Many-{i}: " + "a" * 5000 for i in range(20)]):
        with connect(stable, timeout=5) as sock:
            sock.sendall(raw_post("big", *fields))
            closed, received = closed_within(sock, 5)
        assert closed and received.split()[1] == b"431"


def test_curl_sends_expect_itself_for_a_big_body_and_gets_its_answer_at_once(stable, tmp_path):
    """Over 1 MB, curl asks ``Expect: 100-continue`` on its own; the worker answers 100, then the prediction."""
    import shutil
    import subprocess

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    big = tmp_path / "big.json"
    body = message("curl-big")
    body["data"]["ndarray"] *= 40_000
    big.write_text(json.dumps(body))
    assert big.stat().st_size > 1024 * 1024
    started = time.monotonic()
    done = subprocess.run([curl, "-sS", "-v", "-H", "Content-Type: application/json", "--data-binary", f"@{big}",
                           stable["url"] + PREDICT], capture_output=True, timeout=30)
    assert done.returncode == 0 and b"Expect: 100-continue" in done.stderr and b"< HTTP/1.1 100" in done.stderr
    answer = json.loads(done.stdout)
    assert answer["meta"]["puid"] == "curl-big" and len(answer["data"]["ndarray"]) == 40_000
    assert time.monotonic() - started < 10


def test_request_ids_and_platform_traffic_headers_as_the_router_treats_them(stable):
    kept = requests.post(stable["url"] + PREDICT, json=message(), headers={"X-Request-Id": "caller-7"}, timeout=10)
    made = requests.post(stable["url"] + PREDICT, json=message(), headers={"X-Request-Id": "a b"}, timeout=10)
    assert kept.headers["X-Request-Id"] == "caller-7" and len(made.headers["X-Request-Id"]) == 32
    # A caller cannot mark its traffic as the platform's own: it lands in the production log.
    puid = uuid.uuid4().hex
    answer = requests.post(stable["url"] + PREDICT, json=message(puid), headers={"X-Platform-Traffic": "smoke"},
                           timeout=10)
    assert answer.status_code == 200
    production = [json.loads(line) for f in (stable["tmp"] / "inference").glob("day=*/*.jsonl")
                  for line in f.read_text().splitlines()]
    assert [line["request_id"] for line in production].count(puid) == 1
    assert _status(stable)["served"] == {}  # the router forwarded none of these


def test_no_caller_ever_receives_another_callers_answer(stable):
    """16 keep-alive callers, 10,000 requests, a tenth with Expect: 100-continue or a chunked body."""
    outcomes, wrong = cross_talk(stable["url"], message)
    assert not wrong, wrong[:5]
    assert outcomes["error"] == 0 and sum(outcomes.values()) == 10_000
    assert _status(stable)["served"] == {}  # every one went to the workers straight


def test_a_killed_router_costs_callers_nothing_and_gets_the_port_back(stable):
    supervisor = Supervisor(stable["dir"])
    before = supervisor.pid(release.ROUTER_GROUP, "router")
    answers: list = []

    async def callers(until: float) -> None:
        async def one() -> None:
            async with aiohttp.ClientSession(stable["url"]) as session:
                while time.monotonic() < until:
                    puid = uuid.uuid4().hex
                    try:
                        async with session.post(PREDICT, json=message(puid)) as answer:
                            answers.append((answer.status, (await answer.json())["meta"]["puid"] == puid))
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        answers.append((repr(exc), False))

        await asyncio.gather(*(one() for _ in range(4)))

    async def kill_during() -> None:
        load = asyncio.create_task(callers(time.monotonic() + 4))
        await asyncio.sleep(1)
        os.kill(before, signal.SIGKILL)
        await load

    asyncio.run(kill_during())
    assert answers and all(a == (200, True) for a in answers), Counter(answers).most_common(3)
    deadline = time.monotonic() + 15
    while supervisor.pid(release.ROUTER_GROUP, "router") in (0, before):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert group_members(before) == []
    _wait_direct(stable, timeout_s=20)  # the restarted router got the port back and handed it again
    assert requests.post(stable["url"] + PREDICT, json=message("after"), timeout=10).json()["meta"]["puid"] == "after"

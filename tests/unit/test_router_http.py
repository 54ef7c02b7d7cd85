"""The stable endpoint's router over real HTTP: edge cases sent by real clients, and no cross-talk.

The router runs as its own process (as a release starts it) in front of a stand-in model
server written here: it answers a prediction with the request's own ``meta.puid``, and it
sends an interim ``100 Continue`` to an ``Expect: 100-continue`` as real servers do. The
clients are curl, requests, httpx, aiohttp and raw sockets (pipelining, HTTP/1.0, half-closed,
slow and oversized requests).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests
from aiohttp import web

from platform_assets.deploy.processes import free_port
from platform_assets.deploy.router import ADMIN_PATH, PREDICT_PATH, Routes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READ_TIMEOUT_S = 2.0  # the router's --read-timeout here (10 s by default)
UPSTREAM_TIMEOUT_S = 3.0  # the router's --timeout here (30 s by default)


class StandIn:
    """A stand-in model server on its own event loop in a thread; remembers what reached it."""

    def __init__(self, name: str, port: int | None = None):
        self.name, self.port = name, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: deque = deque(maxlen=2000)  # (method, path, headers, body length) of recent requests
        self.headers_seen: Counter = Counter()  # lower-case header names, over all requests
        self.puids: list[str] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def listen():
            server = web.Server(self._handle, access_log=None, request_factory=lambda *args: web.BaseRequest(
                *args, loop=self.loop, client_max_size=64 * 1024 * 1024))
            self.runner = web.ServerRunner(server)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.loop.run_until_complete(listen())
        ready.set()
        self.loop.run_forever()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), len(body)))
        self.headers_seen.update(h.lower() for h in request.headers)
        if request.path == "/slow":
            await asyncio.sleep(float(request.query.get("s", "1")))
        if request.path == "/interim":  # unasked 1xx before the answer: never an answer itself
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            request.writer.output_size = 0
        echo = {"X-Seen-Request-Id": request.headers.get("X-Request-Id", "")}
        if request.method == "POST" and request.path == PREDICT_PATH:
            message = json.loads(body)
            puid = message.get("meta", {}).get("puid")
            self.puids.append(puid)
            if random.random() < 0.05:
                await asyncio.sleep(random.random() / 500)  # some answers overtake others
            return web.json_response({"data": {"ndarray": [[len(body) / 1e6]]},
                                      "meta": {"puid": puid, "upstream": self.name}}, headers=echo)
        return web.json_response({"upstream": self.name, "method": request.method, "path": request.path_qs,
                                  "body_bytes": len(body)}, headers=echo)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def start_router(routes: Routes, folder: Path, *extra: str) -> dict:
    """The router as a release starts it, on free ports; returns its process, URLs and routes file."""
    routes_path = folder / "routes.json"
    routes.write(routes_path)
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "platform_assets.deploy.router", "--routes", str(routes_path), "--host", "127.0.0.1",
         "--port", str(port), "--admin-port", str(admin_port), "--timeout", str(UPSTREAM_TIMEOUT_S),
         "--read-timeout", str(READ_TIMEOUT_S), *extra],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    admin = f"http://127.0.0.1:{admin_port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(admin + ADMIN_PATH, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
        time.sleep(0.05)
    return {"process": process, "url": f"http://127.0.0.1:{port}", "port": port, "admin": admin,
            "routes": routes_path}


def stop_router(router: dict) -> None:
    router["process"].terminate()
    router["process"].wait(10)


@pytest.fixture(scope="module")
def upstreams():
    pair = StandIn("a"), StandIn("b")
    yield pair
    for upstream in pair:
        upstream.stop()


@pytest.fixture(scope="module")
def router(upstreams, tmp_path_factory):
    started = start_router(Routes(stable=upstreams[0].url), tmp_path_factory.mktemp("router"))
    yield started
    stop_router(started)


def message(puid: str | None = None, rows: int = 1) -> dict:
    return {"data": {"names": ["income", "region"], "ndarray": [[50000.0, "north"]] * rows},
            "meta": {"puid": puid or uuid.uuid4().hex}}


# --- raw sockets -------------------------------------------------------------------------------------------


def connect(router: dict, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", router["port"]), timeout=timeout)


def read_answer(stream) -> tuple[int, dict, bytes]:
    """One answer from a buffered socket file: status, header fields (lower-case names), body."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    fields = {}
    for line in iter(stream.readline, b"\r\n"):
        assert line, "connection closed within a head"
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, stream.read(int(fields.get("content-length", 0)))


def post_head(body: bytes, *extra: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"POST {PREDICT_PATH} HTTP/{version}", "Host: router", "Content-Type: application/json",
                        f"Content-Length: {len(body)}", *extra, "", ""]).encode()


def raw_post(puid: str, *extra: str, version: str = "1.1") -> bytes:
    body = json.dumps(message(puid)).encode()
    return post_head(body, *extra, version=version) + body


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the router closes ``sock`` within ``seconds``; and what it sent meanwhile."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except socket.timeout:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def pipelined(sock: socket.socket, requests: list[bytes]) -> list[tuple[int, str]]:
    """Sends ``requests`` in one write on ``sock``; each answer's status and ``meta.puid``, in order."""
    sock.sendall(b"".join(requests))
    stream = sock.makefile("rb")
    return [(status, json.loads(body)["meta"]["puid"]) for status, _, body in (read_answer(stream) for _ in requests)]


def test_pipelined_requests_in_one_write_are_answered_in_order(router):
    puids = [uuid.uuid4().hex for _ in range(3)]
    with connect(router) as sock:
        assert pipelined(sock, [raw_post(p) for p in puids]) == [(200, p) for p in puids]


def test_http_1_0_and_connection_close_get_their_answer_then_the_connection_closes(router):
    for request in (raw_post("p10", version="1.0"), raw_post("pclose", "Connection: close")):
        with connect(router) as sock:
            sock.sendall(request)
            closed, received = closed_within(sock, 5)
        assert closed
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.split()[1] == b"200" and json.loads(body)["meta"]["puid"] in ("p10", "pclose")


def test_http_1_0_keep_alive_is_kept(router):
    with connect(router) as sock:
        stream = sock.makefile("rb")
        for puid in ("k1", "k2"):
            sock.sendall(raw_post(puid, "Connection: keep-alive", version="1.0"))
            status, fields, body = read_answer(stream)
            assert status == 200 and json.loads(body)["meta"]["puid"] == puid


def test_a_half_closed_client_still_gets_its_answer(router):
    with connect(router) as sock:
        sock.sendall(raw_post("half") + raw_post("half2"))
        sock.shutdown(socket.SHUT_WR)
        stream = sock.makefile("rb")
        answers = [read_answer(stream) for _ in range(2)]
        assert stream.read() == b""  # then the router closes
    assert [json.loads(b)["meta"]["puid"] for _, _, b in answers] == ["half", "half2"]


def test_a_chunked_request_body_is_read_whole_and_sent_with_a_length(router, upstreams):
    body = json.dumps(message("chunked")).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    head = "\r\n".join([f"POST {PREDICT_PATH} HTTP/1.1", "Host: router", "Transfer-Encoding: chunked", "", ""])
    with connect(router) as sock:
        sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        status, _, answer = read_answer(sock.makefile("rb"))
    assert status == 200 and json.loads(answer)["meta"]["puid"] == "chunked"
    _, _, headers, length = next(s for s in reversed(upstreams[0].seen) if s[3] == len(body))
    assert headers.get("Content-Length") == str(len(body)) and "Transfer-Encoding" not in headers


def test_expect_100_continue_gets_one_interim_100_then_the_real_answer(router, upstreams):
    body = json.dumps(message("expecting")).encode()
    with connect(router) as sock:
        sock.sendall(post_head(body, "Expect: 100-continue"))
        stream = sock.makefile("rb")
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        sock.sendall(body)
        status, _, answer = read_answer(stream)
        assert status == 200 and json.loads(answer)["meta"]["puid"] == "expecting"
        sock.sendall(raw_post("next"))  # the same connection answers the next caller's request with its own
        status, _, answer = read_answer(stream)
        assert status == 200 and json.loads(answer)["meta"]["puid"] == "next"
    assert "expect" not in upstreams[0].headers_seen


def test_an_upstream_1xx_is_never_an_answer(router):
    for _ in range(3):  # on a kept-alive upstream connection, each answer is its own
        answer = requests.get(router["url"] + "/interim", timeout=10)
        assert answer.status_code == 200 and answer.json()["path"] == "/interim"


def test_too_large_a_body_is_413_without_reading_it(router):
    with connect(router) as sock:
        sock.sendall(post_head(b"x" * 10, "Expect: 100-continue").replace(b"Content-Length: 10",
                                                                          b"Content-Length: 70000000"))
        status, _, body = read_answer(sock.makefile("rb"))
    assert status == 413


def test_a_slow_client_is_answered_408_within_the_read_timeout(router):
    """Half a head, a whole head and part of the body, a head sent slowly: each has the read timeout in all."""
    head = post_head(b"x" * 100)
    started = time.monotonic()
    with connect(router) as half_head, connect(router) as half_body, connect(router) as slow_head:
        half_head.sendall(head[:30])
        half_body.sendall(head + b"x" * 10)
        slow_head.sendall(head[:30])
        time.sleep(READ_TIMEOUT_S * 0.6)
        slow_head.sendall(head[30:] + b"x" * 10)
        outcomes = [closed_within(s, READ_TIMEOUT_S + 2) for s in (half_head, half_body, slow_head)]
    took = time.monotonic() - started
    assert all(closed for closed, _ in outcomes) and READ_TIMEOUT_S - 0.1 < took < READ_TIMEOUT_S + 2
    assert [received.split()[1] for _, received in outcomes] == [b"408"] * 3


def test_a_request_pipelined_behind_a_slow_answer_is_not_timed_out(router):
    """Time spent queued behind another request is the router's, not the caller's."""
    slow = f"GET /slow?s={READ_TIMEOUT_S + 0.5} HTTP/1.1\r\nHost: router\r\n\r\n".encode()
    with connect(router) as sock:
        sock.sendall(slow + raw_post("queued"))
        stream = sock.makefile("rb")
        answers = [read_answer(stream) for _ in range(2)]
    assert [a[0] for a in answers] == [200, 200] and json.loads(answers[1][2])["meta"]["puid"] == "queued"


def test_an_idle_keep_alive_connection_stays_open_beyond_the_read_timeout(router):
    with connect(router) as sock:
        stream = sock.makefile("rb")
        sock.sendall(raw_post("before"))
        assert read_answer(stream)[0] == 200
        time.sleep(READ_TIMEOUT_S + 0.5)
        sock.sendall(raw_post("after"))
        assert json.loads(read_answer(stream)[2])["meta"]["puid"] == "after"


@pytest.mark.parametrize("fields", [["X-Big: " + "a" * 10_000],  # one field over aiohttp's 8190 bytes
                                    [f"X-Many-{i}: " + "a" * 5000 for i in range(20)],  # 100 KB of head
                                    [f"X-F{i}: 1" for i in range(200)]])  # over aiohttp's 128 fields
def test_oversized_request_heads_get_a_4xx_not_a_hang(router, fields):
    with connect(router, timeout=5) as sock:
        sock.sendall(raw_post("big", *fields))
        closed, received = closed_within(sock, 5)
    assert closed and received.startswith(b"HTTP/1."), received[:200]
    assert int(received.split()[1]) in (400, 413, 431)


# --- real clients ------------------------------------------------------------------------------------------


def test_requests_json_chunked_and_other_methods(router):
    with requests.Session() as session:
        answer = session.post(router["url"] + PREDICT_PATH, json=message("req"), timeout=10)
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == "req"
        body = json.dumps(message("req-chunked")).encode()
        answer = session.post(router["url"] + PREDICT_PATH, data=iter([body[:5], body[5:]]), timeout=10)
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == "req-chunked"
        answer = session.get(router["url"] + "/health/status?x=1%202", timeout=10)
        assert answer.json() == {"upstream": "a", "method": "GET", "path": "/health/status?x=1%202",
                                 "body_bytes": 0}
        assert session.delete(router["url"] + "/thing", timeout=10).json()["method"] == "DELETE"


def test_httpx_json_and_streamed_body(router):
    with httpx.Client(base_url=router["url"], timeout=10) as client:
        answer = client.post(PREDICT_PATH, json=message("hx"))
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == "hx"
        body = json.dumps(message("hx-stream")).encode()
        answer = client.post(PREDICT_PATH, content=iter([body[:9], body[9:]]))  # chunked
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == "hx-stream"


def test_aiohttp_client_with_expect_100_continue_and_chunked(router):
    async def calls():
        async with aiohttp.ClientSession(router["url"]) as session:
            async with session.post(PREDICT_PATH, json=message("aio-expect"), expect100=True) as answer:
                assert answer.status == 200 and (await answer.json())["meta"]["puid"] == "aio-expect"
            body = json.dumps(message("aio-chunked")).encode()
            async with session.post(PREDICT_PATH, data=body, chunked=True) as answer:
                assert answer.status == 200 and (await answer.json())["meta"]["puid"] == "aio-chunked"

    asyncio.run(calls())


@pytest.fixture(scope="module")
def curl():
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return path


def test_curl_big_body_sends_expect_itself_and_gets_its_answer_at_once(router, curl, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(message("curl-big", rows=60_000)))  # about 1.3 MB: curl adds Expect: 100-continue
    assert big.stat().st_size > 1024 * 1024
    started = time.monotonic()
    done = subprocess.run([curl, "-sS", "-v", "-H", "Content-Type: application/json", "--data-binary", f"@{big}",
                           router["url"] + PREDICT_PATH], capture_output=True, timeout=30)
    assert done.returncode == 0 and b"Expect: 100-continue" in done.stderr
    assert json.loads(done.stdout)["meta"]["puid"] == "curl-big" and time.monotonic() - started < 5
    answer = json.loads(done.stdout)
    assert answer["data"]["ndarray"][0][0] == pytest.approx(big.stat().st_size / 1e6)


def test_curl_http_1_0_and_several_requests_on_one_connection(router, curl):
    done = subprocess.run([curl, "-sS", "--http1.0", "-H", "Content-Type: application/json", "--data",
                           json.dumps(message("curl10")), router["url"] + PREDICT_PATH],
                          capture_output=True, timeout=30)
    assert done.returncode == 0 and json.loads(done.stdout)["meta"]["puid"] == "curl10"
    args = []
    for i in range(3):
        args += (["--next"] if i else []) + ["-H", "Content-Type: application/json", "--data",
                                             json.dumps(message(f"curl-{i}")), router["url"] + PREDICT_PATH]
    done = subprocess.run([curl, "-sS", "-v", *args], capture_output=True, timeout=30)
    puids = [json.loads(line)["meta"]["puid"] for line in done.stdout.replace(b"}{", b"}\n{").splitlines()]
    assert puids == ["curl-0", "curl-1", "curl-2"] and b"Re-using existing connection" in done.stderr


# --- headers, admin, upstream failures ---------------------------------------------------------------------


def test_request_ids_are_kept_when_sane_made_otherwise_and_sent_upstream(router):
    answer = requests.get(router["url"] + "/x", headers={"X-Request-Id": "caller-42"}, timeout=10)
    assert answer.headers["X-Request-Id"] == "caller-42" == answer.headers["X-Seen-Request-Id"]
    for insane in ("x" * 129, "two words", ""):
        answer = requests.get(router["url"] + "/x", headers={"X-Request-Id": insane}, timeout=10)
        made = answer.headers["X-Request-Id"]
        assert made != insane and len(made) == 32 and answer.headers["X-Seen-Request-Id"] == made


def test_a_caller_cannot_send_platform_traffic_headers_upstream(router, upstreams):
    answer = requests.post(router["url"] + PREDICT_PATH, json=message("sneaky"),
                           headers={"X-Platform-Traffic": "smoke-test", "Connection": "X-Hop", "X-Hop": "1"},
                           timeout=10)
    assert answer.status_code == 200
    assert "x-platform-traffic" not in upstreams[0].headers_seen and "x-hop" not in upstreams[0].headers_seen


def test_routes_answer_on_the_admin_port_only(router, upstreams):
    status = requests.get(router["admin"] + ADMIN_PATH, timeout=5).json()
    assert status["routes"] == {"stable": upstreams[0].url, "canary": None, "canary_weight": 0.0, "shadow": None}
    assert set(status) == {"routes", "in_flight", "served", "shadow", "waited"} and status["served"][upstreams[0].url] > 0
    for call in (requests.get, requests.post):
        for path in (ADMIN_PATH, ADMIN_PATH + "/reload"):
            answer = call(router["url"] + path, timeout=5)
            assert answer.status_code == 404 and "stable" not in answer.text
    admin_port = int(router["admin"].rsplit(":", 1)[1])
    with socket.socket() as sock:  # bound to the loopback interface only
        assert sock.connect_ex(("127.0.0.1", admin_port)) == 0
    assert requests.get(router["admin"] + "/other", timeout=5).status_code == 404


def test_reload_switches_the_upstream_and_a_request_in_flight_keeps_going(upstreams, tmp_path):
    a, b = upstreams
    router = start_router(Routes(stable=a.url), tmp_path)
    try:
        slow = {}
        thread = threading.Thread(target=lambda: slow.update(
            answer=requests.get(router["url"] + "/slow?s=1", timeout=10)))
        thread.start()
        time.sleep(0.3)
        assert requests.get(router["admin"] + ADMIN_PATH, timeout=5).json()["in_flight"] == {a.url: 1}
        Routes(stable=b.url).write(router["routes"])
        reloaded = requests.post(router["admin"] + ADMIN_PATH + "/reload", timeout=5).json()
        assert reloaded["routes"]["stable"] == b.url
        assert requests.post(router["url"] + PREDICT_PATH, json=message(), timeout=10).json()["meta"]["upstream"] == "b"
        thread.join()
        assert slow["answer"].status_code == 200 and slow["answer"].json()["upstream"] == "a"
        router["routes"].write_text("{not json")
        failed = requests.post(router["admin"] + ADMIN_PATH + "/reload", timeout=5)
        assert failed.status_code == 500 and "routes not reloaded" in failed.json()["error"]
        assert requests.get(router["url"] + "/x", timeout=10).json()["upstream"] == "b"  # the last good routes
    finally:
        stop_router(router)


def test_an_unreachable_upstream_is_502_and_a_slow_one_504(upstreams, tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    router = start_router(Routes(stable=nobody), tmp_path, "--unreachable-wait", "1.0")
    try:
        started = time.monotonic()
        answer = requests.post(router["url"] + PREDICT_PATH, json=message(), timeout=10)
        assert 1.0 <= time.monotonic() - started < 5.0  # it waited for the upstream, then gave up
        assert answer.status_code == 502 and answer.json()["status"]["reason"] == "UPSTREAM_UNAVAILABLE"
        assert answer.json()["status"]["info"].startswith(f"model server {nobody} unreachable: ")
        Routes(stable=upstreams[0].url).write(router["routes"])
        requests.post(router["admin"] + ADMIN_PATH + "/reload", timeout=5).raise_for_status()
        answer = requests.get(router["url"] + f"/slow?s={UPSTREAM_TIMEOUT_S + 1}", timeout=10)
        assert answer.status_code == 504 and answer.json()["status"] == {
            "code": 504, "info": f"model server {upstreams[0].url} did not answer within {UPSTREAM_TIMEOUT_S} s",
            "reason": "UPSTREAM_TIMEOUT", "status": 1}
    finally:
        stop_router(router)


def test_a_request_waits_for_an_upstream_that_comes_back_instead_of_failing(tmp_path):
    """While a model server is being restarted (connections refused), callers wait rather than get a 502."""
    port = free_port()
    router = start_router(Routes(stable=f"http://127.0.0.1:{port}"), tmp_path)
    late = None
    try:
        timer = threading.Timer(1.5, lambda: started.append(StandIn("late", port=port)))
        started: list = []
        timer.start()
        begun = time.monotonic()
        answer = requests.post(router["url"] + PREDICT_PATH, json=message(puid="waited-1"), timeout=15)
        waited = time.monotonic() - begun
        late = started[0] if started else None
        assert answer.status_code == 200 and answer.json()["meta"]["puid"] == "waited-1"
        assert 1.0 < waited < 10.0
        assert requests.get(router["admin"] + ADMIN_PATH, timeout=5).json()["waited"]["unreachable"] > 0
    finally:
        stop_router(router)
        if late is not None:
            late.stop()


def test_a_shadow_gets_a_copy_under_the_stable_answers_puid_after_the_caller(upstreams, tmp_path):
    a, b = upstreams
    router = start_router(Routes(stable=a.url, shadow=b.url), tmp_path)
    try:
        puids = [uuid.uuid4().hex for _ in range(20)]
        for puid in puids:
            answer = requests.post(router["url"] + PREDICT_PATH, json=message(puid), timeout=10).json()
            assert answer["meta"] == {"puid": puid, "upstream": "a"}
        requests.get(router["url"] + "/not-a-prediction", timeout=10)
        deadline = time.monotonic() + 10
        while (status := requests.get(router["admin"] + ADMIN_PATH, timeout=5).json())["shadow"].get(
                "answered", 0) < len(puids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status["shadow"] == {"pending": 0, "answered": len(puids)}
        assert set(puids) <= set(b.puids)
    finally:
        stop_router(router)


# --- cross-talk --------------------------------------------------------------------------------------------


def cross_talk(url: str, message_of, callers: int = 16, total: int = 10_000) -> tuple[Counter, list]:
    """``callers`` keep-alive callers send ``total`` requests to ``url``, a tenth with Expect: 100-continue
    or a chunked body, each with its own ``meta.puid`` (``message_of(puid)``) and X-Request-Id.

    Returns:
        Requests by kind (and errors), and every answer that was not 200 with the request's own ids.
    """
    outcomes: Counter = Counter()
    wrong: list = []

    async def caller(index: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection per caller
        async with aiohttp.ClientSession(url, connector=connector) as session:
            for n in range(index, total, callers):
                puid, request_id = uuid.uuid4().hex, f"req-{n}"
                body = json.dumps(message_of(puid)).encode()
                kind = ("expect", "chunked")[n // 10 % 2] if n % 10 == 0 else "plain"
                options = {"expect100": True} if kind == "expect" else {"chunked": True} if kind == "chunked" else {}
                try:
                    async with session.post(PREDICT_PATH, data=body, headers={
                            "Content-Type": "application/json", "X-Request-Id": request_id}, **options) as answer:
                        got = await answer.json()
                        if answer.status != 200 or got["meta"]["puid"] != puid or \
                                answer.headers["X-Request-Id"] != request_id:
                            wrong.append((kind, puid, answer.status, got))
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    outcomes["error"] += 1
                    wrong.append((kind, puid, repr(exc)))
                outcomes[kind] += 1

    async def all_callers() -> None:
        await asyncio.gather(*(caller(i) for i in range(callers)))

    started = time.monotonic()
    asyncio.run(all_callers())
    print(f"{total} requests from {callers} callers in {time.monotonic() - started:.1f} s: {dict(outcomes)}")
    return outcomes, wrong


def test_no_caller_ever_receives_another_callers_answer(router):
    """16 keep-alive callers, 10,000 requests, a tenth with Expect: 100-continue or a chunked body."""
    outcomes, wrong = cross_talk(router["url"], message)
    assert not wrong, wrong[:5]
    assert outcomes["error"] == 0 and sum(outcomes.values()) == 10_000
    assert outcomes["expect"] == outcomes["chunked"] == 10_000 // 20

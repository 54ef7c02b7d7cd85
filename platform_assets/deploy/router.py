"""The stable endpoint of a use case's model: an HTTP router in front of its model servers.

Callers always talk to the router's port; a release starts the new version on a free
port beside the old one and, once it is healthy and smoke-tested, switches the route:

- ``stable``: the version that answers callers;
- ``canary`` with ``canary_weight``: a version that answers that share of requests;
- ``shadow``: a version that gets a copy of every prediction request after the
  caller has had the stable answer, under the same request id (``meta.puid``);
  its answers are logged by that server and never returned.

The routes live in a JSON file, read at start and on ``POST /-/routes/reload``
(which answers the routes now in force); ``GET /-/routes`` also reports the
requests in flight per upstream, so that a release drains the old version before
stopping it. Both answer only on the admin port, bound to 127.0.0.1: the
prediction port neither shows nor changes routes. A request in flight keeps its
upstream across a switch. A request whose upstream refuses the connection (a model
server being restarted by its supervisor) waits for it, trying again every 0.1 s, up to
``--unreachable-wait`` (10 s), then gets a 502 naming it; one slower than ``--timeout``
a 504.

With ``--control`` (as releases start it), the router hands the prediction port's
listening socket to the stable version's workers while no canary and no shadow share
the traffic, and takes it back otherwise (:mod:`platform_assets.deploy.handoff`): the
requests of that steady state cost no proxy hop.

HTTP both ways is aiohttp's (its parser, keep-alive, pipelining, chunked bodies,
client connection pool), not hand-written: a router that parses and forwards HTTP
itself got ``Expect: 100-continue`` wrong and handed answers to the wrong callers.
The router reads each request whole (at most 64 MiB), answers an ``Expect`` itself
and sends the upstream a plain request with a ``Content-Length``; the aiohttp client
never takes a 1xx for an answer. Every answer carries ``X-Request-Id``: the caller's
if it is a sane token, else a new one, also sent upstream.

Run as its own process::

    python -m platform_assets.deploy.router --routes FILE --host H --port P --admin-port A
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict
from yarl import URL

from platform_assets.deploy.handoff import RouterHandoff

ADMIN_PATH = "/-/routes"
PREDICT_PATH = "/api/v1.0/predictions"
# Mirrored requests waiting for the shadow beyond this are dropped (and counted): the shadow never slows callers.
MAX_SHADOW_BACKLOG = 1000
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
IDLE_TIMEOUT_S = 30.0  # an idle client connection is closed after this
# An upstream connection idle this long is not reused: the model server closes kept-alive ones after 5 s.
IDLE_UPSTREAM_S = 4.0
# How often a request waiting for an upstream that refused the connection tries again.
UNREACHABLE_POLL_S = 0.1
# A restarted router whose port the stable version's workers hold waits this long for them to give it back.
HANDBACK_WAIT_S = 10.0

# Not forwarded either way: they describe one connection, not the request (RFC 9110 7.6.1), or the router
# sets them itself; X-Platform-Traffic marks the platform's own smoke tests and no caller may send it.
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
    "Content-Length", "Host", "Expect", "X-Request-Id", "X-Platform-Traffic"))
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def _error(status: int, reason: str, info: str, close: bool = False) -> web.Response:
    """An answer of the router itself, in the model server's error shape; ``close``: then the connection."""
    answer = web.json_response({"status": {"code": status, "info": info, "reason": reason, "status": 1}},
                               status=status)
    if close:
        answer.force_close()
    return answer


async def _send(request: web.BaseRequest, answer: web.StreamResponse, request_id: str) -> None:
    """Sends ``answer`` now, rather than when the handler returns it."""
    answer.headers["X-Request-Id"] = request_id
    await answer.prepare(request)
    await answer.write_eof()


def _forwarded(headers) -> CIMultiDict:
    """``headers`` less hop-by-hop ones, including those the ``Connection`` header names."""
    drop = _HOP_BY_HOP
    if "Connection" in headers:
        drop = drop | {t.strip().lower() for v in headers.getall("Connection") for t in v.split(",")}
    return CIMultiDict([(k, v) for k, v in headers.items() if k.lower() not in drop])


@dataclass(frozen=True)
class Routes:
    """Where requests go: the stable upstream, an optional canary with its share, an optional shadow."""

    stable: str
    canary: str | None = None
    canary_weight: float = 0.0
    shadow: str | None = None

    def __post_init__(self):
        if not 0.0 <= self.canary_weight <= 1.0:
            raise ValueError(f"canary_weight must be within 0..1, got {self.canary_weight}")

    @classmethod
    def read(cls, path: Path) -> "Routes":
        """The routes in ``path`` (JSON with the fields of this class)."""
        data = json.loads(Path(path).read_text())
        return cls(**{k: data.get(k) for k in ("stable", "canary", "shadow")},
                   canary_weight=float(data.get("canary_weight") or 0.0))

    def write(self, path: Path) -> None:
        """Writes the routes to ``path`` atomically (a reader sees the old or the new file, whole)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    def pick(self) -> str:
        """The upstream of one request: the canary for its share of requests, else the stable one."""
        if self.canary and self.canary_weight > 0 and random.random() < self.canary_weight:
            return self.canary
        return self.stable


class _Connection(RequestHandler):
    """aiohttp's server connection plus what it lacks for slow and half-closed clients.

    - aiohttp closes a connection only when it has waited ``keepalive_timeout`` (30 s) for a
      whole head, so a slow client holds it that long per request: here a head must be whole
      within ``read_timeout_s`` of its first byte, else 408. The body has the rest of that time
      (:meth:`Router._read`); time queued behind a pipelined request does not count.
    - aiohttp closes the connection on a client's EOF, dropping the answers owed to a client
      that sent whole requests and then shut its side: here they are sent, then it closes.
    """

    def __init__(self, manager: web.Server, *, read_timeout_s: float, **kwargs):
        super().__init__(manager, **kwargs)
        self.read_timeout_s = read_timeout_s
        self._head_started = 0.0  # when the first byte of the head being read arrived
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_took: deque[float] = deque()  # how long each parsed request took to send its head
        self._body = None  # the body stream of the latest request parsed: bytes after its end are a head
        self._eof = False

    def _idle(self) -> bool:
        """Whether no request is being answered or waits to be (aiohttp waits for the next one)."""
        return self._body is None or (self._waiter is not None and not self._waiter.done())

    def data_received(self, data: bytes) -> None:
        if data and self._head_timer is None and (self._body is None or self._body.is_eof()):
            self._head_started = self._loop.time()
            self._head_timer = self._loop.call_later(self.read_timeout_s, self._head_too_slow)
        parsed = len(self._messages)
        super().data_received(data)
        if len(self._messages) > parsed:
            took = self._loop.time() - self._head_started if self._head_timer is not None else 0.0
            self._head_took.extend([took] + [0.0] * (len(self._messages) - parsed - 1))
            self._body = self._messages[-1][1]
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        """Answers 408 and closes; while an earlier request is answered, closes after that answer."""
        self._head_timer = None
        if self.transport is None:
            return
        if not self._idle():
            self.close()  # no answer may interleave with the one being written
            return
        body = json.dumps({"error": f"no whole request head within {self.read_timeout_s} s"}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.force_close()

    def eof_received(self) -> bool:
        """The client shut its side: True keeps ours open while answers are owed (asyncio closes on False)."""
        self._eof = True
        return not self._idle()

    async def _handle_request(self, request, start_time, request_handler):
        """aiohttp's handling of one request, told how long its head took; closes after a half-closed client's last."""
        request["head_took"] = self._head_took.popleft() if self._head_took else 0.0
        answered = await super()._handle_request(request, start_time, request_handler)
        if self._eof and not self._messages:
            self.close()
        return answered

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)


class Router:
    """The routes in force, requests in flight per upstream, what the shadow was sent, and the handlers."""

    def __init__(self, routes_path: Path, timeout_s: float = 30.0, read_timeout_s: float = 10.0,
                 unreachable_wait_s: float = 10.0):
        self.routes_path = Path(routes_path)
        self.routes = Routes.read(self.routes_path)
        self.timeout_s, self.read_timeout_s, self.unreachable_wait_s = timeout_s, read_timeout_s, unreachable_wait_s
        self.in_flight: Counter = Counter()
        self.waited: Counter = Counter()  # tries again of requests whose upstream refused the connection
        self.served: Counter = Counter()
        self.shadow: Counter = Counter()
        self.session: aiohttp.ClientSession | None = None
        self.handoff: RouterHandoff | None = None

    def reload(self) -> Routes:
        """Reads the routes file again; the next request follows it (and, see :mod:`handoff`, the stable
        port's socket goes to the workers of a version that takes every request, or comes back)."""
        self.routes = Routes.read(self.routes_path)
        if self.handoff is not None:
            self.handoff.direct(self.direct_upstream())
        return self.routes

    def direct_upstream(self) -> str | None:
        """The upstream whose workers may accept the callers' connections themselves: the stable one
        while no canary and no shadow share its traffic."""
        routes = self.routes
        return routes.stable if not routes.shadow and not (routes.canary and routes.canary_weight > 0) else None

    def status(self) -> dict:
        """The routes in force, requests in flight per upstream (with the callers' connections its workers
        hold, when they accept them), requests served through the router, and the shadow's counters."""
        in_flight = Counter(self.in_flight)
        if self.handoff is not None:
            in_flight.update(self.handoff.connections())
        found = {"routes": asdict(self.routes), "in_flight": dict(+in_flight), "served": dict(self.served),
                 "shadow": dict(self.shadow), "waited": dict(self.waited)}
        if self.handoff is not None:
            found["handoff"] = self.handoff.status()
        return found

    async def admin(self, request: web.BaseRequest) -> web.Response:
        """``GET /-/routes`` and ``POST /-/routes/reload`` (admin port only)."""
        if request.path == ADMIN_PATH and request.method in ("GET", "HEAD"):
            return web.json_response(self.status())
        if request.path == ADMIN_PATH + "/reload" and request.method == "POST":
            try:
                self.reload()
            except (OSError, ValueError, TypeError) as exc:
                return web.json_response({"error": f"routes not reloaded: {exc}"}, status=500)
            # Answered once the port is where the routes say: a caller's next connection follows them.
            if self.handoff is not None and not await self.handoff.settled(4.0):
                return web.json_response({"error": "routes read, but the stable port's workers did not follow "
                                                   "within 4 s", **self.status()}, status=500)
            return web.json_response(self.status())
        return web.json_response({"error": f"no admin route {request.method} {request.path}"}, status=404)

    async def predict(self, request: web.BaseRequest) -> web.StreamResponse:
        """Any request on the prediction port: read whole, forwarded to the upstream the routes pick."""
        given = request.headers.get("X-Request-Id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        answer = await self._answer(request, request_id)
        if not answer.prepared:
            answer.headers["X-Request-Id"] = request_id
        return answer

    async def _answer(self, request: web.BaseRequest, request_id: str) -> web.StreamResponse:
        if request.rel_url.path.startswith(ADMIN_PATH):
            return _error(404, "NOT_FOUND", "routes are not served on this port")
        # aiohttp bounds each head line and the number of fields: a head can still reach about 1 MiB.
        if len(request.raw_path) + sum(len(k) + len(v) + 4 for k, v in request.raw_headers) > MAX_HEAD_BYTES:
            return _error(431, "HEAD_TOO_LARGE", f"a request head is at most {MAX_HEAD_BYTES} bytes", True)
        body = await self._read(request, request_id)
        if isinstance(body, web.StreamResponse):
            return body
        routes, headers = self.routes, _forwarded(request.headers)
        headers["X-Request-Id"] = request_id
        upstream, loop, give_up = routes.pick(), asyncio.get_running_loop(), None
        while True:
            try:
                status, reason, answer_headers, answer_body = await self._forward(
                    upstream, request.method, request.rel_url.raw_path_qs, headers, body)
                break
            except asyncio.TimeoutError:
                return _error(504, "UPSTREAM_TIMEOUT",
                              f"model server {upstream} did not answer within {self.timeout_s} s")
            except aiohttp.ClientConnectorError as exc:
                # Not connected: the request never left. A server that died is started again by its
                # supervisor within seconds: the caller waits for it (bounded) rather than getting a 502.
                give_up = give_up or loop.time() + self.unreachable_wait_s
                if loop.time() >= give_up:
                    return _error(502, "UPSTREAM_UNAVAILABLE", f"model server {upstream} unreachable: {exc!r}")
                self.waited["unreachable"] += 1
                await asyncio.sleep(UNREACHABLE_POLL_S)
                upstream = self.routes.pick()  # the routes may have changed meanwhile
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                return _error(502, "UPSTREAM_UNAVAILABLE", f"model server {upstream} unreachable: {exc!r}")
        answer = web.Response(status=status, reason=reason, headers=_forwarded(answer_headers), body=answer_body)
        if (routes.shadow and status == 200 and request.method == "POST" and body
                and request.rel_url.path.startswith(PREDICT_PATH)):
            try:  # the caller has the answer before the shadow gets its copy
                await _send(request, answer, request_id)
            except ConnectionError:
                return answer  # the caller went away: aiohttp closes the connection
            self._mirror(routes.shadow, request.rel_url.raw_path_qs, headers, body, answer_body)
        return answer

    async def _read(self, request: web.BaseRequest, request_id: str) -> bytes | web.StreamResponse:
        """The whole request body, or the router's answer when it cannot have it (413, 417, 408, 400)."""
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _error(413, "REQUEST_TOO_LARGE", f"a body is at most {MAX_BODY_BYTES} bytes", True)
        expect = request.headers.get("Expect")
        if expect is not None:  # answered here, never forwarded: only the router reads the caller's body
            if expect.lower() != "100-continue":
                return _error(417, "EXPECTATION_FAILED", f"unknown Expect: {expect}", True)
            if request.version >= aiohttp.HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s - request.get("head_took", 0.0)
        try:
            async with asyncio.timeout_at(deadline):
                return await request.read()
        except TimeoutError:
            answer = _error(408, "REQUEST_TIMEOUT", f"the request was not sent whole within {self.read_timeout_s} s")
            with contextlib.suppress(ConnectionError):
                await _send(request, answer, request_id)
            request.protocol.force_close()  # rather than aiohttp reading the rest of a slow body for 10 s more
            return answer
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "REQUEST_TOO_LARGE", f"a body is at most {MAX_BODY_BYTES} bytes", True)
        except aiohttp.ClientPayloadError as exc:
            return _error(400, "BAD_REQUEST_BODY", f"unreadable request body: {exc}", True)

    async def _forward(self, url: str, method: str, target: str, headers: CIMultiDict, body: bytes) -> tuple:
        """Sends one request to ``url``; returns the answer's status, reason, headers and body.

        A kept-alive connection that the upstream closes just as it is reused fails before any answer;
        aiohttp resends only idempotent requests then, the router resends any request once.
        """
        self.in_flight[url] += 1
        try:
            for attempt in (1, 2):
                try:
                    async with self.session.request(method, URL(url.rstrip("/") + target, encoded=True),
                                                    headers=headers, data=body) as answer:
                        return answer.status, answer.reason, answer.headers, await answer.read()
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    if attempt == 2 or isinstance(exc, aiohttp.ClientConnectorError):
                        raise
        finally:
            self.in_flight[url] -= 1
            self.served[url] += 1

    def _mirror(self, url: str, target: str, headers: CIMultiDict, body: bytes, answer: bytes) -> None:
        """Sends a copy of a prediction request to the shadow, under the request id of the stable answer."""
        if self.shadow["pending"] >= MAX_SHADOW_BACKLOG:
            self.shadow["dropped"] += 1
            return
        self.shadow["pending"] += 1
        asyncio.get_running_loop().create_task(self._send_shadow(url, target, headers, body, answer))

    async def _send_shadow(self, url: str, target: str, headers: CIMultiDict, body: bytes, answer: bytes) -> None:
        outcome = "failed"
        try:
            request = json.loads(body)
            puid = (json.loads(answer).get("meta") or {}).get("puid") or uuid.uuid4().hex
            if isinstance(request, dict):
                meta = request.get("meta") if isinstance(request.get("meta"), dict) else {}
                request["meta"] = {**meta, "puid": puid}
            status, *_ = await self._forward(url, "POST", target, headers, json.dumps(request).encode())
            outcome = "answered" if status == 200 else f"status_{status}"
        except (aiohttp.ClientError, OSError, ValueError, AttributeError, asyncio.TimeoutError):
            pass
        finally:
            self.shadow["pending"] -= 1
            self.shadow[outcome] += 1

    async def serve(self, host: str, port: int, admin_port: int, control: Path | None = None) -> None:
        """Serves predictions on ``host:port`` and the admin routes on ``127.0.0.1:admin_port``, for ever;
        with ``control``, hands the prediction port to the stable version's workers (:mod:`handoff`)."""
        loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_UPSTREAM_S),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # a cookie one upstream answer sets must not reach other callers
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"))

        def server(handler) -> web.Server:
            return web.Server(handler, request_factory=lambda *args: web.BaseRequest(
                *args, loop=loop, client_max_size=MAX_BODY_BYTES))

        predict, admin = server(self.predict), server(self.admin)
        options = dict(loop=loop, read_timeout_s=self.read_timeout_s, keepalive_timeout=IDLE_TIMEOUT_S,
                       access_log=None, auto_decompress=False)
        servers = [await loop.create_server(lambda: _Connection(admin, **options), "127.0.0.1", admin_port,
                                            reuse_address=True)]
        if control is None:
            servers.append(await loop.create_server(lambda: _Connection(predict, **options), host, port,
                                                    backlog=1024, reuse_address=True))
        else:
            def accept(sock):
                return loop.create_server(lambda: _Connection(predict, **options), sock=sock, backlog=1024)

            self.handoff = RouterHandoff(loop, control, accept, self.direct_upstream())
            self.handoff.open_control()
            await self.handoff.bind(host, port, HANDBACK_WAIT_S)
        print(f"router on {host}:{port} (admin on 127.0.0.1:{admin_port}) -> {self.routes}", flush=True)
        try:
            await asyncio.gather(*(s.serve_forever() for s in servers))
        finally:
            await self.session.close()


def main(argv: list[str] | None = None) -> int:
    """The router's command line: ``--routes FILE --host H --port P --admin-port A [--timeout S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", required=True, help="the routes file (JSON)")
    parser.add_argument("--host", default="127.0.0.1", help="the prediction port's address")
    parser.add_argument("--port", type=int, required=True, help="the prediction port (the stable endpoint)")
    parser.add_argument("--admin-port", type=int, required=True, help="the admin port, on 127.0.0.1 only")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds an upstream has to answer")
    parser.add_argument("--read-timeout", type=float, default=10.0,
                        help="seconds a caller has to send a whole request, head and body")
    parser.add_argument("--control", help="a Unix socket to hand the prediction port to the stable version's "
                        "workers over (see platform_assets/deploy/handoff.py); without it the router proxies every request")
    parser.add_argument("--unreachable-wait", type=float, default=10.0,
                        help="seconds a request waits for an upstream that refuses connections (one being "
                             "restarted) before it is answered 502")
    args = parser.parse_args(argv)
    import signal

    import uvloop

    # Stop when told, whatever the starting process ignored (an ignored signal is inherited across exec).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    router = Router(Path(args.routes), args.timeout, args.read_timeout, args.unreachable_wait)
    uvloop.run(router.serve(args.host, args.port, args.admin_port, Path(args.control) if args.control else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

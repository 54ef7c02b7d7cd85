"""The stable endpoint of a use case's model: a small HTTP router in front of its model servers.

Plain Python (one ``uvloop`` event loop, ``httptools`` parsing, keep-alive connections
both ways: its cost per request is a small share of the model server's), run as its own process
(``python -m platform_assets.deploy.router --routes FILE --port P``). Callers always
talk to the router's port; a release starts the new version on a free port beside
the old one and, once it is healthy and smoke-tested, switches the route:

- ``stable``: the version that answers callers;
- ``canary`` with ``canary_weight``: a version that answers that share of requests;
- ``shadow``: a version that gets a copy of every prediction request after the
  caller has had the stable answer, under the same request id (``meta.puid``);
  its answers are logged by that server and never returned.

The routes live in a JSON file, read at start and on ``POST /-/routes/reload``
(which answers the routes now in force); ``GET /-/routes`` also reports the
requests in flight per upstream, so that a release drains the old version before
stopping it. A request in flight keeps its upstream connection across a switch:
none is dropped. An upstream that cannot be reached is a 502 naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import urllib.parse
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httptools

ADMIN_PATH = "/-/routes"
PREDICT_PATH = "/api/v1.0/predictions"
# Mirrored requests waiting for the shadow beyond this are dropped (and counted): the shadow never slows callers.
MAX_SHADOW_BACKLOG = 1000


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


_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"proxy-connection",
               b"content-length", b"host"}
IDLE_TIMEOUT_S = 30.0  # an idle client connection is closed after this
# An upstream connection idle this long is not reused: the model server closes kept-alive ones after 5 s.
IDLE_UPSTREAM_S = 4.0
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class BadRequest(ValueError):
    """A request the router cannot read (answered 400 and the connection closed)."""


class _Message:
    """One parsed HTTP message (request or response): start, header fields (lower-case names), body."""

    __slots__ = ("url", "reason", "fields", "body", "size", "method", "status", "keep_alive")

    def __init__(self):
        self.url, self.reason, self.fields, self.body, self.size = b"", b"", [], [], 0


class _Parsing:
    """httptools callbacks collecting messages into ``self.complete``; limits on head and body size."""

    def _reset_parsing(self) -> None:
        self.message: _Message | None = None
        self.head_bytes = 0
        self.complete: list[_Message] = []

    def on_message_begin(self) -> None:
        self.message, self.head_bytes = _Message(), 0

    def on_url(self, url: bytes) -> None:
        self.message.url += url
        self._count(len(url))

    def on_status(self, reason: bytes) -> None:
        self.message.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.message.fields.append((name.lower(), value))
        self._count(len(name) + len(value))

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            raise BadRequest(f"message head over {MAX_HEAD_BYTES} bytes")

    def on_body(self, body: bytes) -> None:
        message = self.message
        message.size += len(body)
        if message.size > MAX_BODY_BYTES:
            raise BadRequest(f"body of over {MAX_BODY_BYTES} bytes")
        message.body.append(body)

    def on_message_complete(self) -> None:
        message, self.message = self.message, None
        message.keep_alive = self.parser.should_keep_alive()
        if isinstance(self.parser, httptools.HttpRequestParser):
            message.method = self.parser.get_method()
        else:
            message.status = self.parser.get_status_code()
        self.complete.append(message)


class _UpstreamConnection(_Parsing, asyncio.Protocol):
    """One keep-alive connection to a model server: one request at a time."""

    def __init__(self):
        self._reset_parsing()
        self.parser = httptools.HttpResponseParser(self)
        self.transport = None
        self.waiter: asyncio.Future | None = None
        self.answered = False  # bytes of the current answer arrived
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, BadRequest) as exc:
            self._fail(ConnectionError(f"unreadable answer from the model server: {exc}"))
            return
        if self.complete and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.complete.pop(0))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ConnectionError("the model server closed the connection"))

    def _fail(self, error: BaseException) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future:
        self.answered, self.complete = False, []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class _Upstream:
    """Idle keep-alive connections to one upstream."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.netloc = parsed.hostname, parsed.port, parsed.netloc.encode()
        self.idle: list[_UpstreamConnection] = []

    def _idle_connection(self, now: float) -> _UpstreamConnection | None:
        """The most recently used idle connection that the upstream has not closed yet, if any."""
        while self.idle:
            connection = self.idle.pop()
            if now - connection.idle_since < IDLE_UPSTREAM_S and not connection.closed:
                return connection
            connection.transport.close()
        return None

    async def exchange(self, head: bytes, body: bytes, timeout_s: float) -> _Message:
        """Sends one request; returns the answer. A kept-alive connection the upstream closed
        while idle is replaced once by a new one (the request never reached the upstream)."""
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            connection = self._idle_connection(loop.time()) if attempt == 0 else None
            reused = connection is not None
            if connection is None:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(_UpstreamConnection, self.host, self.port), timeout_s)
            waiter = connection.send(head + body)
            timer = loop.call_later(timeout_s, lambda c=connection: c._fail(
                asyncio.TimeoutError(f"no answer within {timeout_s} s")))
            try:
                answer = await waiter
            except ConnectionError:
                if reused and attempt == 0 and not connection.answered:
                    continue
                raise
            finally:
                timer.cancel()
            if answer.keep_alive and not connection.closed:
                connection.idle_since = loop.time()
                self.idle.append(connection)
            else:
                connection.transport.close()
            return answer
        raise ConnectionError("unreachable")


class RouterState:
    """The routes in force, requests in flight per upstream, and what the shadow was sent."""

    def __init__(self, routes_path: Path, timeout_s: float = 30.0):
        self.routes_path = Path(routes_path)
        self.routes = Routes.read(self.routes_path)
        self.timeout_s = timeout_s
        self.upstreams: dict[str, _Upstream] = {}
        self.in_flight: Counter = Counter()
        self.served: Counter = Counter()
        self.shadow: Counter = Counter()

    def reload(self) -> Routes:
        """Reads the routes file again; the next request follows it."""
        self.routes = Routes.read(self.routes_path)
        return self.routes

    def status(self) -> dict:
        return {"routes": asdict(self.routes), "in_flight": dict(+self.in_flight), "served": dict(self.served),
                "shadow": dict(self.shadow)}

    async def forward(self, url: str, method: bytes, target: bytes, fields: list, body: bytes) -> _Message:
        upstream = self.upstreams.get(url) or self.upstreams.setdefault(url, _Upstream(url))
        head = b"".join([method, b" ", target, b" HTTP/1.1\r\nHost: ", upstream.netloc, b"\r\n",
                         *(n + b": " + v + b"\r\n" for n, v in fields if n not in _HOP_BY_HOP),
                         b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n"])
        self.in_flight[url] += 1
        try:
            return await upstream.exchange(head, body, self.timeout_s)
        finally:
            self.in_flight[url] -= 1
            self.served[url] += 1

    def mirror(self, url: str, target: bytes, fields: list, body: bytes, answer: bytes) -> None:
        """Sends a copy of a prediction request to the shadow, under the request id of the stable answer."""
        if self.shadow["pending"] >= MAX_SHADOW_BACKLOG:
            self.shadow["dropped"] += 1
            return
        self.shadow["pending"] += 1
        asyncio.get_running_loop().create_task(self._send_shadow(url, target, fields, body, answer))

    async def _send_shadow(self, url: str, target: bytes, fields: list, body: bytes, answer: bytes) -> None:
        outcome = "failed"
        try:
            request = json.loads(body)
            puid = (json.loads(answer).get("meta") or {}).get("puid") or uuid.uuid4().hex
            if isinstance(request, dict):
                meta = request.get("meta") if isinstance(request.get("meta"), dict) else {}
                request["meta"] = {**meta, "puid": puid}
            answer = await self.forward(url, b"POST", target, fields, json.dumps(request).encode())
            outcome = "answered" if answer.status == 200 else f"status_{answer.status}"
        except (OSError, ValueError, asyncio.TimeoutError):
            pass
        finally:
            self.shadow["pending"] -= 1
            self.shadow[outcome] += 1


def _response(status: int, reason: bytes, fields, body: bytes, keep_alive: bool) -> bytes:
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, reason or b"OK"),
                     *(n + b": " + v + b"\r\n" for n, v in fields if n not in _HOP_BY_HOP),
                     b"Content-Length: %d\r\n" % len(body),
                     b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n", body])


def _json_response(code: int, reason: str, value: dict, keep_alive: bool) -> bytes:
    return _response(code, reason.encode(), [(b"content-type", b"application/json")], json.dumps(value).encode(),
                     keep_alive)


class _ClientConnection(_Parsing, asyncio.Protocol):
    """One caller's connection: requests parsed as they arrive, answered in order."""

    def __init__(self, state: "RouterState"):
        self._reset_parsing()
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.pending: list[_Message] = []
        self.busy = False
        self.closing = False
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._idle()

    def connection_lost(self, exc) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()

    def _idle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self.busy and not self.pending and self.message is None:
            self.close()

    def close(self) -> None:
        self.closing = True
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, BadRequest) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, BadRequest) else exc
            self.transport.write(_json_response(400, "Bad Request", {"error": f"unreadable request: {cause}"}, False))
            self.close()
            return
        self.pending.extend(self.complete)
        self.complete.clear()
        if self.pending and not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._answer_all())

    async def _answer_all(self) -> None:
        try:
            while self.pending and not self.closing:
                request = self.pending.pop(0)
                try:
                    answer = await self._answer(request)
                except Exception as exc:  # noqa: BLE001 - a router bug must not leave the caller waiting
                    answer = _json_response(500, "Internal Server Error", {"error": f"router failed: {exc!r}"}, False)
                    request.keep_alive = False
                if self.closing:  # the caller went away meanwhile
                    return
                self.transport.write(answer)
                if not request.keep_alive:
                    self.close()
        finally:
            self.busy = False
            if not self.closing:
                self._idle()

    async def _answer(self, request: _Message) -> bytes:
        state, path, keep_alive = self.state, request.url.decode("latin-1"), request.keep_alive
        if path.startswith(ADMIN_PATH):
            if request.method == b"POST" and path == ADMIN_PATH + "/reload":
                try:
                    state.reload()
                except (OSError, ValueError, TypeError) as exc:
                    return _json_response(500, "Internal Server Error", {"error": f"routes not reloaded: {exc}"},
                                          keep_alive)
            return _json_response(200, "OK", state.status(), keep_alive)
        routes = state.routes
        upstream = routes.pick()
        body = b"".join(request.body)
        try:
            answer = await state.forward(upstream, request.method, request.url, request.fields, body)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            message = {"status": {"code": 502, "info": f"model server {upstream} unreachable: {exc!r}",
                                  "reason": "UPSTREAM_UNAVAILABLE", "status": 1}}
            return _json_response(502, "Bad Gateway", message, keep_alive)
        answer_body = b"".join(answer.body)
        if (routes.shadow and request.method == b"POST" and path.startswith(PREDICT_PATH) and body
                and answer.status == 200):
            state.mirror(routes.shadow, request.url, request.fields, body, answer_body)
        return _response(answer.status, answer.reason, answer.fields, answer_body, keep_alive)


async def _serve(state: RouterState, host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: _ClientConnection(state), host, port,
                                                            backlog=512, reuse_address=True)
    print(f"router on {host}:{port} -> {state.routes}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", required=True, help="the routes file (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds an upstream has to answer")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(_serve(RouterState(Path(args.routes), args.timeout), args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

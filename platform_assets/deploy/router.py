"""The stable endpoint of a use case's model: a small HTTP router in front of its model servers.

Plain Python (standard library only: one asyncio event loop, keep-alive connections
both ways), run as its own process
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
import urllib.parse
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

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


def _parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The start line and the header fields of an HTTP/1.x message head."""
    lines = head[:-4].split(b"\r\n")
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadRequest(f"malformed header line {line[:80]!r}")
        fields.append((name.strip().lower(), value.strip()))
    return lines[0], fields


async def _read_body(reader: asyncio.StreamReader, fields: list[tuple[bytes, bytes]]) -> bytes:
    """The message body: by Content-Length, or chunked."""
    values = dict(fields)
    if values.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(values.get(b"content-length", b"0") or 0)
    if length > MAX_BODY_BYTES:
        raise BadRequest(f"body of {length} bytes is over {MAX_BODY_BYTES}")
    return await reader.readexactly(length) if length else b""


class _Upstream:
    """Idle keep-alive connections to one upstream."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.netloc = parsed.hostname, parsed.port, parsed.netloc.encode()
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    def _idle_connection(self):
        """The most recently used idle connection that the upstream has not closed yet, if any."""
        now = asyncio.get_running_loop().time()
        while self.idle:
            since, reader, writer = self.idle.pop()
            if now - since < IDLE_UPSTREAM_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def exchange(self, head: bytes, body: bytes, timeout_s: float) -> tuple[bytes, list, bytes]:
        """Sends one request; returns (status line, header fields, body). A kept-alive connection the upstream
        closed while idle is replaced once by a new one (the request never reached the upstream)."""
        for attempt in range(2):
            idle = self._idle_connection() if attempt == 0 else None
            reused = idle is not None
            reader, writer = idle or await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout_s)
            try:
                writer.write(head + body)
                await writer.drain()
                answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                writer.close()
                if reused and attempt == 0 and not isinstance(exc, asyncio.TimeoutError):
                    continue
                raise
            except BaseException:
                writer.close()
                raise
            try:
                status, fields = _parse_head(answer)
                data = await asyncio.wait_for(_read_body(reader, fields), timeout_s)
            except BaseException:
                writer.close()
                raise
            if dict(fields).get(b"connection", b"").lower() == b"close":
                writer.close()
            else:
                self.idle.append((asyncio.get_running_loop().time(), reader, writer))
            return status, fields, data
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

    async def forward(self, url: str, method: bytes, target: bytes, fields: list, body: bytes):
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
            status, _, _ = await self.forward(url, b"POST", target, fields, json.dumps(request).encode())
            outcome = "answered" if status.split(b" ")[1] == b"200" else f"status_{status.split(b' ')[1].decode()}"
        except (OSError, ValueError, IndexError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self.shadow["pending"] -= 1
            self.shadow[outcome] += 1


def _response(status: bytes, fields, body: bytes, keep_alive: bool) -> bytes:
    return b"".join([status, b"\r\n", *(n + b": " + v + b"\r\n" for n, v in fields if n not in _HOP_BY_HOP),
                     b"Content-Length: ", str(len(body)).encode(), b"\r\n",
                     b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n", body])


def _json_response(code: int, reason: str, value: dict, keep_alive: bool) -> bytes:
    return _response(f"HTTP/1.1 {code} {reason}".encode(), [(b"content-type", b"application/json")],
                     json.dumps(value).encode(), keep_alive)


async def _serve_connection(state: RouterState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, asyncio.LimitOverrunError):
                return
            try:
                start, fields = _parse_head(head)
                method, target, version = start.split(b" ", 2)
                body = await asyncio.wait_for(_read_body(reader, fields), state.timeout_s)
            except (BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                writer.write(_json_response(400, "Bad Request", {"error": f"unreadable request: {exc}"}, False))
                await writer.drain()
                return
            connection = dict(fields).get(b"connection", b"").lower()
            keep_alive = connection != b"close" if version == b"HTTP/1.1" else connection == b"keep-alive"
            path = target.decode("latin-1")
            if path.startswith(ADMIN_PATH):
                if method == b"POST" and path == ADMIN_PATH + "/reload":
                    try:
                        state.reload()
                    except (OSError, ValueError, TypeError) as exc:
                        writer.write(_json_response(500, "Internal Server Error",
                                                    {"error": f"routes not reloaded: {exc}"}, keep_alive))
                        await writer.drain()
                        continue
                writer.write(_json_response(200, "OK", state.status(), keep_alive))
            else:
                routes = state.routes
                upstream = routes.pick()
                try:
                    status, answer_fields, answer = await state.forward(upstream, method, target, fields, body)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, BadRequest, ValueError) as exc:
                    message = {"status": {"code": 502, "info": f"model server {upstream} unreachable: {exc!r}",
                                          "reason": "UPSTREAM_UNAVAILABLE", "status": 1}}
                    writer.write(_json_response(502, "Bad Gateway", message, keep_alive))
                else:
                    writer.write(_response(status, answer_fields, answer, keep_alive))
                    if (routes.shadow and method == b"POST" and path.startswith(PREDICT_PATH) and body
                            and status.split(b" ")[1:2] == [b"200"]):
                        state.mirror(routes.shadow, target, fields, body, answer)
            await writer.drain()
            if not keep_alive:
                return
    except ConnectionError:
        return
    finally:
        writer.close()


async def _serve(state: RouterState, host: str, port: int) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_connection(state, r, w), host, port,
                                        limit=MAX_HEAD_BYTES, backlog=512, reuse_address=True)
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
    asyncio.run(_serve(RouterState(Path(args.routes), args.timeout), args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

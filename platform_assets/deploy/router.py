"""The stable endpoint of a use case's model: a small HTTP router in front of its model servers.

Plain Python (standard library only), run as its own process
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
import http.client
import json
import os
import random
import threading
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ADMIN_PATH = "/-/routes"
PREDICT_PATH = "/api/v1.0/predictions"
# Mirrored requests waiting for the shadow beyond this are dropped (and counted): the shadow never slows callers.
MAX_SHADOW_BACKLOG = 1000
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


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


class _Upstreams:
    """Keep-alive connections to the upstreams, one set per router thread."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.local = threading.local()

    def _connection(self, url: str, fresh: bool) -> http.client.HTTPConnection:
        pool = self.local.__dict__.setdefault("pool", {})
        if fresh or url not in pool:
            if url in pool:
                pool[url].close()
            parsed = urllib.parse.urlsplit(url)
            pool[url] = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=self.timeout_s)
        return pool[url]

    def send(self, url: str, method: str, path: str, headers: dict, body: bytes | None):
        """Sends one request; returns ``(status, headers, body)``. A kept-alive connection the upstream
        closed while idle is reopened once (the request never reached it)."""
        for attempt in range(2):
            connection = self._connection(url, fresh=attempt > 0)
            reused = connection.sock is not None
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                return response.status, response.getheaders(), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                if not reused or attempt:
                    raise
        raise AssertionError("unreachable")


class RouterState:
    """The routes in force, requests in flight per upstream, and what the shadow was sent."""

    def __init__(self, routes_path: Path, timeout_s: float = 30.0):
        self.routes_path = Path(routes_path)
        self.routes = Routes.read(self.routes_path)
        self.upstreams = _Upstreams(timeout_s)
        self.lock = threading.Lock()
        self.in_flight: Counter = Counter()
        self.served: Counter = Counter()
        self.shadow = Counter()
        self.shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow")
        self.shadow_upstreams = _Upstreams(timeout_s)

    def reload(self) -> Routes:
        """Reads the routes file again; the next request follows it."""
        routes = Routes.read(self.routes_path)
        self.routes = routes
        return routes

    def status(self) -> dict:
        with self.lock:
            return {"routes": asdict(self.routes), "in_flight": dict(self.in_flight), "served": dict(self.served),
                    "shadow": dict(self.shadow)}

    def forward(self, url: str, method: str, path: str, headers: dict, body: bytes | None):
        with self.lock:
            self.in_flight[url] += 1
        try:
            return self.upstreams.send(url, method, path, headers, body)
        finally:
            with self.lock:
                self.in_flight[url] -= 1
                if not self.in_flight[url]:
                    del self.in_flight[url]
                self.served[url] += 1

    def mirror(self, url: str, path: str, headers: dict, body: bytes, answer: bytes) -> None:
        """Queues a copy of a prediction request for the shadow, under the request id the stable answer carries."""
        with self.lock:
            if self.shadow["pending"] >= MAX_SHADOW_BACKLOG:
                self.shadow["dropped"] += 1
                return
            self.shadow["pending"] += 1
        self.shadow_pool.submit(self._send_shadow, url, path, headers, body, answer)

    def _send_shadow(self, url: str, path: str, headers: dict, body: bytes, answer: bytes) -> None:
        outcome = "failed"
        try:
            request = json.loads(body)
            puid = (json.loads(answer).get("meta") or {}).get("puid") or uuid.uuid4().hex
            if isinstance(request, dict):
                meta = request.get("meta") if isinstance(request.get("meta"), dict) else {}
                request["meta"] = {**meta, "puid": puid}
            copy = json.dumps(request).encode()
            status, _, _ = self.shadow_upstreams.send(
                url, "POST", path, {**headers, "Content-Length": str(len(copy))}, copy)
            outcome = "answered" if status == 200 else f"status_{status}"
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            with self.lock:
                self.shadow["pending"] -= 1
                self.shadow[outcome] += 1


def _handler(state: RouterState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # an idle client connection is closed after this (it holds a thread, not the router)

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def _reply(self, status: int, body: bytes, headers=(("Content-Type", "application/json"),)):
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _admin(self):
            if self.command == "POST" and self.path == ADMIN_PATH + "/reload":
                try:
                    state.reload()
                except (OSError, ValueError, TypeError) as exc:
                    return self._reply(500, json.dumps({"error": f"routes not reloaded: {exc}"}).encode())
            self._reply(200, json.dumps(state.status()).encode())

        def _handle(self):
            if self.path.startswith(ADMIN_PATH):
                return self._admin()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            routes = state.routes
            upstream = routes.pick()
            try:
                status, answer_headers, answer = state.forward(upstream, self.command, self.path, headers, body)
            except (OSError, http.client.HTTPException) as exc:
                message = {"status": {"code": 502, "info": f"model server {upstream} unreachable: {exc}",
                                      "reason": "UPSTREAM_UNAVAILABLE", "status": 1}}
                return self._reply(502, json.dumps(message).encode())
            self._reply(status, answer, answer_headers)
            if (routes.shadow and self.command == "POST" and self.path.startswith(PREDICT_PATH)
                    and status == 200 and body):
                state.mirror(routes.shadow, self.path, headers, body, answer)

        do_GET = do_POST = _handle

    return Handler


class RouterServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", required=True, help="the routes file (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds an upstream has to answer")
    args = parser.parse_args(argv)
    state = RouterState(Path(args.routes), args.timeout)
    server = RouterServer((args.host, args.port), _handler(state))
    print(f"router on {args.host}:{args.port} -> {state.routes}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        state.shadow_pool.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A gunicorn worker that answers Seldon's prediction route on an event loop, and everything else through Seldon's app.

Seldon Core 1.17's REST server is a Flask app under gunicorn's threaded worker. Measured
here (one row, one worker), a prediction cost about 2.7 ms of CPU: over 2 ms of it in
gunicorn's HTTP parser, its thread hand-offs, Flask, werkzeug and Flask-Cors around
the model's own 0.6 ms; and one idle client could hold a thread. This worker keeps
Seldon's contract and cuts that path:

- ``POST`` of a JSON body to ``/api/v1.0/predictions`` (or ``/api/v0.1/predictions``,
  ``/predict``), with no query string and no ``Origin`` header, is parsed by
  ``httptools`` on a ``uvloop`` event loop and handed to Seldon's own
  ``seldon_methods.predict`` (the model's ``predict_raw`` and its custom metrics), the
  answer encoded as Seldon's ``jsonify`` does, a ``SeldonMicroserviceException``
  answered with its status and ``to_dict()`` as Seldon's error handler does;
- every other request (health, metadata, feedback, form or query-string payloads,
  CORS, unknown paths) goes to Seldon's Flask app itself as a WSGI call, unchanged;
- a prediction body that is neither JSON nor a form (another or no ``Content-Type``), a
  form without Seldon's ``json`` field, and a body that is not UTF-8 JSON (or nests it
  deeper than orjson's limit) are answered 400 saying what is wrong.

The ``X-Platform-Traffic`` header (``smoke``: the platform's own smoke tests and checks;
the router never forwards it from callers) is put in :data:`payload.traffic` while the
model scores, on either path, so that the model logs that traffic apart.

Connections cost nothing while idle and are closed after ``keepalive`` seconds of
silence; a request has ``read_timeout_s`` for its head and body together (a body that
did not arrive in time is answered 408, a head that did not is closed); an answer the
client does not read within as long closes the connection. Bodies over the limit are
refused (413): before they are read when they declare a length, as they arrive when
chunked; a request head over 64 KiB is refused with 431.

While the routes send every request to this version, the router hands the worker the
stable port's listening socket (``platform_assets/deploy/handoff.py``): callers'
connections are then accepted here without a proxy hop, treated as the router treats
them (``X-Platform-Traffic`` ignored, an ``X-Request-Id`` on every answer), and closed
after their next answer once the router takes the port back.

``threads`` 1 (the default) scores each request on the event loop, one at a time per
worker: the model is CPU-bound and the GIL serialises threads anyway (seldon-core#3332).
More threads score that many at once, for models that wait on I/O (an online feature
lookup).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import signal
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import parse_qs

import httptools
import orjson
from gunicorn.workers.base import Worker

import payload
from platform_assets import config

logger = logging.getLogger("model_server.worker")
PREDICT_PATHS = frozenset({b"/api/v1.0/predictions", b"/api/v0.1/predictions", b"/predict"})
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})  # Seldon's `json` field
_TRAFFIC = payload.TRAFFIC_HEADER.encode()
_REQUEST_ID = payload.REQUEST_ID_HEADER.encode()
_REASONS = {status.value: status.phrase for status in HTTPStatus}
MAX_HEAD_BYTES = 64 * 1024  # as the router: a longer request line and headers are answered 431
# Set by the deployment: the router's control socket and this server's URL in the routes (handoff.py).
STABLE_CONTROL, UPSTREAM_URL = "SERVING_STABLE_CONTROL", "SERVING_UPSTREAM_URL"


def _seldon_error(message: str, status: int) -> bytes:
    from seldon_core.flask_utils import SeldonMicroserviceException

    return json.dumps(SeldonMicroserviceException(message, status_code=status).to_dict()).encode()


def _has_nonfinite(value) -> bool:
    """Whether a JSON-like value holds a float NaN or infinity anywhere."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_has_nonfinite, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_has_nonfinite, value))
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "fc":
        import numpy as np

        return not bool(np.isfinite(value).all())
    return False


def _not_a_payload(content_type: bytes, body: bytes) -> str | None:
    """Why a prediction body that is not sent as JSON cannot be one; ``None`` for Seldon's forms."""
    if content_type not in FORM_TYPES:
        sent = f"Content-Type {content_type.decode('latin-1')!r}" if content_type else "no Content-Type"
        return f"the request has {sent}: send the JSON body with Content-Type: application/json"
    if content_type == b"application/x-www-form-urlencoded" and b"json" not in parse_qs(body):
        return ("the request is a form (Content-Type application/x-www-form-urlencoded) without a 'json' field: "
                "send the JSON body with Content-Type: application/json")
    return None


_STATUS_LINES = {status: f"HTTP/1.1 {status} {phrase}\r\n".encode() for status, phrase in _REASONS.items()}


def _head(status: int, headers: list[tuple[str, str]], length: int, keep_alive: bool) -> bytes:
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()]
    parts += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    parts.append(b"Content-Length: %d\r\nConnection: %s\r\n\r\n" % (length, b"keep-alive" if keep_alive else b"close"))
    return b"".join(parts)


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "version")

    def __init__(self):
        self.url, self.headers, self.body = b"", [], []


class SeldonProtocolWorker(Worker):
    """gunicorn worker: Seldon's prediction route on an event loop, the rest through Seldon's Flask app."""

    #: Set by the launcher before the workers fork: the model object, Seldon's metrics,
    #: and the limits (seconds a request may take to arrive, bytes a body may have).
    user_model = None
    seldon_metrics = None
    read_timeout_s: float = 10.0
    max_body_bytes: int = 16 * 1024 * 1024

    def run(self) -> None:
        import uvloop

        self._fast = config.get("TRACING") not in ("1", "true", "True")  # Seldon traces through Flask
        threads = max(1, int(self.cfg.threads))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="score") if threads > 1 else None
        self._connections: set[_Connection] = set()
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, stopping.set)
        servers = [await loop.create_server(lambda: _Connection(self, loop), sock=listener.sock, backlog=self.cfg.backlog)
                   for listener in self.sockets]
        handoff = None
        if config.is_set(STABLE_CONTROL) and config.is_set(UPSTREAM_URL):
            from platform_assets.deploy.handoff import WorkerHandoff

            def serve_stable(sock):
                return loop.create_server(lambda: _Connection(self, loop, handoff), sock=sock, backlog=self.cfg.backlog)

            handoff = WorkerHandoff(loop, config.get(STABLE_CONTROL), config.get(UPSTREAM_URL), serve_stable)
            handoff.start()
        parent = self.ppid
        while self.alive and not stopping.is_set():
            self.notify()
            if os.getppid() != parent:
                logger.info("parent changed, shutting down: %s", self)
                break
            try:
                await asyncio.wait_for(stopping.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        self.alive = False
        if handoff is not None:
            handoff.close()  # the router accepts the stable port's connections again
        for server in servers:
            server.close()  # no new connections; requests being scored finish
        deadline = loop.time() + self.cfg.graceful_timeout
        while any(c.busy for c in self._connections) and loop.time() < deadline:
            self.notify()
            await asyncio.sleep(0.05)
        for connection in list(self._connections):
            connection.close()

    # --- requests -------------------------------------------------------------------------
    def answer(self, request: _Request, stable: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of one request (runs on the loop, or on a scoring thread).

        ``stable``: a caller's request on the stable port (handed over by the router): as the router
        does, its ``X-Platform-Traffic`` is ignored and its answer carries ``X-Request-Id``.
        """
        path, _, query = request.url.partition(b"?")
        content_type, origin, traffic, request_id = b"", False, None, None
        for name, value in request.headers:
            if name == b"content-type":
                content_type = value.split(b";")[0].strip().lower()
            elif name == b"origin":
                origin = True
            elif name == _TRAFFIC:
                traffic = value.decode("latin-1").strip().lower()
            elif name == _REQUEST_ID:
                request_id = value.decode("latin-1").strip()
        if stable:  # kept when sane, else made
            traffic = None
            request_id = request_id if request_id and payload.sane_request_id(request_id) else os.urandom(16).hex()
        token, id_token = payload.traffic.set(traffic), payload.header_request_id.set(request_id)
        try:
            status, headers, body = self._route(request, path, query, content_type, origin)
        finally:
            payload.traffic.reset(token)
            payload.header_request_id.reset(id_token)
        return status, [*headers, ("X-Request-Id", request_id)] if stable else headers, body

    def _route(self, request: _Request, path: bytes, query: bytes, content_type: bytes, origin: bool):
        if self._fast and request.method == b"POST" and path in PREDICT_PATHS and not query and not origin:
            if content_type == b"application/json" or content_type.endswith(b"+json"):
                return self._predict(b"".join(request.body))
            refused = _not_a_payload(content_type, b"".join(request.body))
            if refused is not None:
                return 400, [("Content-Type", "application/json")], _seldon_error(refused, 400)
        return self._wsgi(request, path, query)

    def _predict(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Seldon's ``Predict`` route without Flask: same dispatch, same JSON, same errors."""
        from seldon_core.flask_utils import SeldonMicroserviceException
        from seldon_core.seldon_methods import predict

        headers = [("Content-Type", "application/json")]
        try:
            try:
                message = payload.decode_json(body)
            except payload.RequestError as error:
                raise SeldonMicroserviceException(str(error), status_code=400) from None
            response = predict(self.user_model, message, self.seldon_metrics)
        except SeldonMicroserviceException as error:
            logger.error("%s", error.to_dict())
            return error.status_code, headers, json.dumps(error.to_dict()).encode()
        except Exception as error:  # noqa: BLE001 - answered 500 and logged with its traceback
            logger.exception("prediction failed")
            return 500, headers, _seldon_error(f"prediction failed: {type(error).__name__}: {error}", 500)
        status = 200
        if isinstance(response, dict) and isinstance(response.get("status"), dict) and "code" in response["status"]:
            status = int(response["status"]["code"])
        try:
            # orjson writes NaN and infinity as null: a null is looked at, a NaN never leaves as a number.
            encoded = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
            if b"null" in encoded and _has_nonfinite(response):
                raise ValueError("the model answered NaN or infinity")
        except (TypeError, ValueError) as error:
            logger.exception("answer could not be encoded")
            return 500, headers, _seldon_error(f"answer is not JSON: {error}", 500)
        return status, headers, encoded

    def _wsgi(self, request: _Request, path: bytes, query: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Any other request: a WSGI call of Seldon's Flask app."""
        body = b"".join(request.body)
        host, port = (self.sockets[0].sock.getsockname()[:2] if self.sockets else ("localhost", 0))
        environ = {
            "REQUEST_METHOD": request.method.decode("latin-1"), "SCRIPT_NAME": "",
            "PATH_INFO": path.decode("latin-1"), "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": str(host), "SERVER_PORT": str(port), "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "CONTENT_LENGTH": str(len(body)), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": self._pool is not None,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value.decode("latin-1")
            elif key != "CONTENT_LENGTH":
                environ["HTTP_" + key] = value.decode("latin-1")
        started: dict = {}

        def start_response(status, response_headers, exc_info=None):
            started["status"], started["headers"] = int(status.split(" ", 1)[0]), response_headers

        result = self.wsgi(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        skip = {"content-length", "connection", "transfer-encoding", "keep-alive"}
        return started["status"], [(n, v) for n, v in started["headers"] if n.lower() not in skip], data


class _Connection(asyncio.Protocol):
    """One client connection: parsing, deadlines, in-order answers."""

    def __init__(self, worker: SeldonProtocolWorker, loop: asyncio.AbstractEventLoop, stable=None):
        self.worker, self.loop = worker, loop
        self.stable = stable  # the WorkerHandoff when a caller's connection on the stable port
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.request: _Request | None = None  # being received
        self.queue: deque[_Request] = deque()  # received, not answered yet
        self.busy = False  # a request is being scored
        self.closing = False
        self.timer = None
        self.headers_done = False
        self.refusal: tuple[int, str] | None = None
        self.head_bytes = self.body_bytes = 0

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.worker._connections.add(self)
        if self.stable is not None:
            self.stable.opened()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._arm(self.worker.cfg.keepalive, self._idle_expired)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self._disarm()
        self.worker._connections.discard(self)
        if self.stable is not None:
            self.stable.closed()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            if self.refusal is None:
                self.refusal = (400, f"malformed HTTP request: {error}")
            self._refuse(*self.refusal)
            return
        self._next()

    def pause_writing(self) -> None:  # the client is not reading its answers
        self.transport.pause_reading()
        self._arm(self.worker.read_timeout_s, self.close)

    def resume_writing(self) -> None:
        self._disarm()
        if not self.closing:
            self.transport.resume_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request, self.headers_done = _Request(), False
        self.head_bytes = self.body_bytes = 0
        self._arm(self.worker.read_timeout_s, self._request_expired)

    def on_url(self, url: bytes) -> None:
        self.request.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name.lower(), value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            self.refusal = (431, f"431 Request Header Fields Too Large: a request head is at most {MAX_HEAD_BYTES} bytes")
            raise ValueError(self.refusal[1])  # stops the parser

    def on_headers_complete(self) -> None:
        self.headers_done = True
        request, parser = self.request, self.parser
        request.method, request.version = parser.get_method(), parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        fields = dict(request.headers)
        length = fields.get(b"content-length")
        limit = self.worker.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self.refusal = (413, f"413 Request Entity Too Large: request body of {int(length)} bytes; "
                                 f"the limit is {limit}")
        if self.refusal is not None:
            raise ValueError(self.refusal[1])  # stops the parser: the body is not read
        if fields.get(b"expect", b"").lower() == b"100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.worker.max_body_bytes:  # a chunked body, counted as it arrives
            self.refusal = (413, f"413 Request Entity Too Large: a request body is at most "
                                 f"{self.worker.max_body_bytes} bytes")
            raise ValueError(self.refusal[1])
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self.queue.append(self.request)
        self.request = None

    # answering
    def _next(self) -> None:
        """Answers the received requests in order: inline, or one at a time on the scoring threads."""
        pool = self.worker._pool
        while self.queue and not self.busy and not self.closing:
            request = self.queue.popleft()
            if pool is None:
                self._send(request, *self._answer(request))
                continue
            self.busy = True
            future = self.loop.run_in_executor(pool, self._answer, request)
            future.add_done_callback(lambda f, r=request: self._scored(r, f))
        if not self.queue and not self.busy and self.request is None and not self.closing:
            self._arm(self.worker.cfg.keepalive, self._idle_expired)

    def _scored(self, request: _Request, future) -> None:
        self.busy = False
        if not self.closing:
            self._send(request, *future.result())
            self._next()

    def _answer(self, request: _Request):
        self.busy = True
        try:
            return self.worker.answer(request, self.stable is not None)
        except Exception as error:  # noqa: BLE001 - the app itself failed: a 500, the connection lives on
            logger.exception("request failed")
            return 500, [("Content-Type", "application/json")], _seldon_error(f"{type(error).__name__}: {error}", 500)
        finally:
            if self.worker._pool is None:
                self.busy = False

    def _send(self, request: _Request, status: int, headers, body: bytes) -> None:
        # A worker told to stop serving the stable port closes its callers' connections after their answer.
        keep_alive = request.keep_alive and self.worker.alive and not (self.stable and self.stable.draining)
        self.transport.write(_head(status, headers, len(body), keep_alive) + body)
        if not keep_alive:
            self.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answers a request that cannot be read, then closes the connection."""
        if not self.closing:
            body = _seldon_error(message, status)
            self.transport.write(_head(status, [("Content-Type", "application/json")], len(body), False) + body)
            self.close()

    # deadlines
    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle_expired(self) -> None:
        if not self.busy and not self.queue and self.request is None:
            self.close()

    def _request_expired(self) -> None:
        if self.headers_done:
            self._refuse(408, f"the request body did not arrive in time (within {self.worker.read_timeout_s} s)")
        else:  # not even a whole head: nothing to answer
            logger.warning("closed a connection that did not send its request within %s s", self.worker.read_timeout_s)
            self.close()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._disarm()
            if self.transport is not None:
                self.transport.close()

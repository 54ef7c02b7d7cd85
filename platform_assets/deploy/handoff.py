"""The stable endpoint without a proxy hop: the router hands its listening socket to the stable model server.

A proxy costs every request a second pass through the kernel and a process on the same
cores: measured here, nginx, HAProxy and the aiohttp router alike cost 12-15 % of the
throughput on 2 cores. So while the routes send every request to one version (no canary,
no shadow), the router passes the stable port's listening socket (the file descriptor,
``SCM_RIGHTS`` over a Unix socket) to that version's workers, and callers' connections are
accepted by the model server itself. The socket is never closed while anyone serves it,
so a connection waiting in its queue is accepted by whoever accepts next:

- at a switch of routes the router accepts again first, then tells the workers that
  held the socket to stop; a connection they hold gets ``Connection: close`` on its next
  answer (a request in flight finishes where it began), and the release waits for those
  connections to end before stopping the old version;
- when a worker dies (a killed model server), its control connection ends and the router
  accepts again at once, holding requests until the restarted server answers;
- when the router dies, the workers keep serving the port and give the socket back to
  the restarted router, which cannot bind the port while they hold it.

The control socket lives beside the routes (or, when that path is too long for a Unix
socket, in a private folder of the user's), and the router answers only processes of its
own user (``SO_PEERCRED``).

Messages are JSON lines; a descriptor rides on the message it belongs to:

- worker -> router: ``{"upstream": URL, "holding": bool}`` (the hello; with the
  socket when ``holding``), ``{"serving": bool}``, ``{"connections": N}`` (the callers'
  connections the worker has open on the stable port);
- router -> worker: ``{"serve": true}`` with the socket, ``{"serve": false}``.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import json
import os
import socket
import struct
import tempfile
from pathlib import Path
from typing import Callable

CONTROL_FILE = "stable.sock"
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux
RECONNECT_S = 0.2  # how often a worker whose router is gone tries its control socket again
REPORT_S = 0.05  # a worker's count of connections is sent at most this often
_MAX_MESSAGE = 4096


def control_path(serving_dir: Path) -> Path:
    """Where the router of ``serving_dir`` listens for its model servers' workers."""
    path = Path(serving_dir).resolve() / CONTROL_FILE
    if len(os.fsencode(str(path))) <= MAX_UNIX_PATH:
        return path
    private = Path(tempfile.gettempdir()) / f"platform-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(private, 0o700)
    return private / f"{hashlib.sha256(str(path).encode()).hexdigest()[:20]}.sock"


class Channel:
    """One end of a control connection: non-blocking JSON lines, with file descriptors attached."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, on_message: Callable, on_close: Callable):
        self.sock, self.loop = sock, loop
        self.on_message, self.on_close = on_message, on_close
        self.buffer, self.fds, self.closed = b"", [], False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: dict, fd: int | None = None) -> None:
        """Sends ``message`` (and ``fd``); a peer that is gone closes the channel."""
        if self.closed:
            return
        data = json.dumps(message).encode() + b"\n"
        try:
            if fd is None:
                self.sock.send(data)
            else:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        except OSError:  # the peer is gone, or (never with messages this small) its buffer is full
            self.close()

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(_MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                descriptors = array.array("i")
                descriptors.frombytes(payload[: len(payload) - len(payload) % descriptors.itemsize])
                self.fds.extend(descriptors)
        if not data:
            self.close()
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                self.close()
                return
            fd = self.fds.pop(0) if message.get("fd") and self.fds else None
            self.on_message(self, message, fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.on_close(self)


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[2]


class WorkerHandoff:
    """A model-server worker's side: serves the stable port while the router says so.

    ``serve(sock)`` must start accepting on a listening socket and return the asyncio server;
    the worker calls :meth:`opened` and :meth:`closed` for each caller connection of that
    server, and reads :attr:`draining` before keeping one alive.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, upstream: str, serve: Callable):
        self.loop, self.path, self.upstream, self._serve = loop, path, upstream, serve
        self.server: asyncio.AbstractServer | None = None
        self.listener: socket.socket | None = None  # our copy of the stable socket while serving
        self.channel: Channel | None = None
        self.connections = 0
        self.draining = False
        self._report = None
        self._task = None

    def start(self) -> None:
        self._task = self.loop.create_task(self._keep_connected())

    async def _keep_connected(self) -> None:
        while True:
            if self.channel is None or self.channel.closed:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    await self.loop.sock_connect(sock, self.path)
                except OSError:
                    sock.close()
                else:
                    self.channel = Channel(sock, self.loop, self._message, lambda _c: None)
                    holding = self.listener is not None
                    self.channel.send({"upstream": self.upstream, "holding": holding,
                                       "fd": holding, "connections": self.connections},
                                      self.listener.fileno() if holding else None)
            await asyncio.sleep(RECONNECT_S)

    def _message(self, channel: Channel, message: dict, fd: int | None) -> None:
        if message.get("serve") and fd is not None:
            if self.listener is not None:
                os.close(fd)  # we serve already: the same socket
            else:
                self.loop.create_task(self._start_serving(fd))
        elif message.get("serve") is False:
            self.stop()
        elif fd is not None:
            os.close(fd)

    async def _start_serving(self, fd: int) -> None:
        listener = socket.socket(fileno=fd)
        listener.setblocking(False)
        # The server gets a copy: closing it (stop) leaves ours for a router that asks for it back.
        self.listener, self.draining = listener, False
        server = await self._serve(listener.dup())
        if self.listener is not listener:  # told to stop meanwhile
            server.close()
            return
        self.server = server
        if self.channel is not None:
            self.channel.send({"serving": True})

    def _let_go(self) -> None:
        """Stops accepting on the stable port and closes our copy of its socket (the router keeps its own)."""
        if self.server is not None:
            self.server.close()
        if self.listener is not None:
            self.listener.close()
        self.server = self.listener = None

    def stop(self) -> None:
        """Stops accepting on the stable port; its open connections close after their next answer."""
        self._let_go()
        self.draining = True
        if self.channel is not None:
            self.channel.send({"serving": False, "connections": self.connections})

    def opened(self) -> None:
        self.connections += 1
        self._schedule_report()

    def closed(self) -> None:
        self.connections -= 1
        self._schedule_report()

    def _schedule_report(self) -> None:
        if self._report is None:
            self._report = self.loop.call_later(REPORT_S, self._send_report)

    def _send_report(self) -> None:
        self._report = None
        if self.channel is not None:
            self.channel.send({"connections": self.connections})

    def close(self) -> None:
        """The worker stops: no more accepting, no more reconnecting."""
        if self._task is not None:
            self._task.cancel()
        self._let_go()
        if self.channel is not None:
            self.channel.close()


class _Worker:
    """The router's view of one connected worker."""

    __slots__ = ("channel", "upstream", "serving", "connections", "sent", "stopping")

    def __init__(self, channel: Channel):
        self.channel, self.upstream = channel, None
        self.serving, self.connections, self.sent, self.stopping = False, 0, False, False


class RouterHandoff:
    """The router's side: owns the stable listening socket, accepts on it itself unless the stable
    version's workers do.

    ``accept(sock)`` must start the router's own server on a listening socket and return it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, accept: Callable, direct_to: str | None = None):
        self.loop, self.path, self._accept = loop, Path(path), accept
        self.listener: socket.socket | None = None
        self.own: asyncio.AbstractServer | None = None
        self.workers: dict[Channel, _Worker] = {}
        self.direct_to = direct_to  # the upstream whose workers may serve the port
        self._control: socket.socket | None = None
        self._starting = False  # the router's own server is being started
        self._handed_back: asyncio.Future | None = None

    # --- start --------------------------------------------------------------------------------
    def open_control(self) -> None:
        """Listens for workers (before the stable port: workers that hold it give it back here)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(str(self.path))
        os.chmod(self.path, 0o600)
        control.listen(64)
        control.setblocking(False)
        self._control = control
        self.loop.add_reader(control.fileno(), self._accept_worker)

    async def bind(self, host: str, port: int, wait_s: float) -> None:
        """The stable port's listening socket: bound here, or given back by workers that hold it
        (a restarted router), waiting up to ``wait_s`` for them."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            self._handed_back = self.loop.create_future()
            try:
                self.listener = await asyncio.wait_for(self._handed_back, wait_s)
            except asyncio.TimeoutError:
                raise OSError(exc.errno, f"port {port} on {host} is taken ({exc.strerror}) and no model server "
                                         f"of this router gave it back within {wait_s:g} s") from None
        else:
            sock.listen(1024)
            sock.setblocking(False)
            self.listener = sock
        self._rebalance()  # the router accepts unless workers of the direct upstream already do

    # --- workers --------------------------------------------------------------------------------
    def _accept_worker(self) -> None:
        try:
            sock, _ = self._control.accept()
        except (BlockingIOError, InterruptedError):
            return
        if peer_uid(sock) != os.getuid():
            sock.close()
            return
        channel = Channel(sock, self.loop, self._message, self._gone)
        self.workers[channel] = _Worker(channel)

    def _message(self, channel: Channel, message: dict, fd: int | None) -> None:
        worker = self.workers.get(channel)
        if worker is None:
            if fd is not None:
                os.close(fd)
            return
        if "upstream" in message:
            worker.upstream = str(message["upstream"])
            worker.serving = bool(message.get("holding"))
            if fd is not None:
                if self._handed_back is not None and not self._handed_back.done():
                    listener = socket.socket(fileno=fd)
                    listener.setblocking(False)
                    self._handed_back.set_result(listener)
                else:
                    os.close(fd)  # the same socket as ours
        elif fd is not None:
            os.close(fd)
        if "serving" in message:
            worker.serving = bool(message["serving"])
            worker.stopping = worker.stopping and worker.serving
        if "connections" in message:
            worker.connections = int(message["connections"])
        self._rebalance()

    def _gone(self, channel: Channel) -> None:
        self.workers.pop(channel, None)
        self._rebalance()

    # --- who accepts --------------------------------------------------------------------------------
    def direct(self, upstream: str | None) -> None:
        """Lets ``upstream``'s workers serve the port (``None``: the router serves it alone)."""
        self.direct_to = upstream
        self._rebalance()

    def _rebalance(self) -> None:
        """Makes sure someone accepts: the router itself whenever no worker of the direct upstream does;
        workers of any other upstream are told to stop only once the router accepts again."""
        if self.listener is None:
            return
        serving_ok = any(w.serving and w.upstream == self.direct_to for w in self.workers.values())
        if not serving_ok and self.own is None and not self._starting:
            self._starting = True
            self.loop.create_task(self._accept_own())
        for worker in list(self.workers.values()):
            if worker.upstream is None:
                continue
            if worker.upstream == self.direct_to:
                if not worker.serving and not worker.sent:
                    worker.sent = True
                    worker.channel.send({"serve": True, "fd": True}, self.listener.fileno())
            elif (worker.serving or worker.sent) and self.own is not None:
                worker.sent = worker.serving = False
                worker.stopping = True  # until it says it stopped
                worker.channel.send({"serve": False})
        if serving_ok and self.own is not None:
            own, self.own = self.own, None
            own.close()

    async def _accept_own(self) -> None:
        try:
            if self.own is None and self.listener is not None:
                self.own = await self._accept(self.listener.dup())
        finally:
            self._starting = False
        self._rebalance()

    async def settled(self, timeout_s: float = 5.0) -> bool:
        """Waits until the routes in force decide who accepts: the router itself or the direct upstream's
        workers accept, and every other worker has said it stopped. Returns whether that happened in time."""
        deadline = self.loop.time() + timeout_s
        while self.loop.time() < deadline:
            accepting = self.own is not None or any(
                w.serving and w.upstream == self.direct_to for w in self.workers.values())
            if accepting and not any(w.stopping or (w.serving and w.upstream != self.direct_to)
                                     for w in self.workers.values()):
                return True
            await asyncio.sleep(0.01)
        return False

    def connections(self) -> dict[str, int]:
        """Callers' connections open on workers, per upstream (a release drains them)."""
        found: dict[str, int] = {}
        for worker in self.workers.values():
            if worker.upstream and worker.connections:
                found[worker.upstream] = found.get(worker.upstream, 0) + worker.connections
        return found

    def status(self) -> dict:
        serving: dict[str, int] = {}
        for worker in self.workers.values():
            if worker.serving and worker.upstream:
                serving[worker.upstream] = serving.get(worker.upstream, 0) + 1
        return {"direct_to": self.direct_to, "router_accepts": self.own is not None,
                "workers_serving": serving, "worker_connections": self.connections()}

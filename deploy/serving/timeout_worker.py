"""A gunicorn threaded worker that one idle or slow client cannot stall.

gunicorn 20.1 (the version seldon-core 1.17.1 allows) hands every accepted
connection straight to a thread of its ``gthread`` worker, and that thread then
blocks reading with no timeout: a client that connects and sends nothing, half
the headers or half the body holds the thread for as long as it likes. This
worker changes two things and nothing else:

1. A new connection waits in the worker's poller, as a kept-alive one does,
   until it has bytes to read: silence costs no thread, and gunicorn closes the
   connection after ``keepalive`` seconds of it.
2. Every request gets one deadline (``read_timeout_s``) for all its reads,
   headers and body together, so a client that trickles a byte at a time
   cannot hold a thread longer either. Writes time out after as long, for a
   client that does not read its answer. A connection that ran out of time is
   closed, never kept alive.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker


class _DeadlineSocket:
    """The reading side of a client socket: all reads share one deadline."""

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock = sock
        self._deadline = time.monotonic() + seconds
        self.expired = False

    def recv(self, size: int) -> bytes:
        """Reads like ``socket.recv``; raises ``TimeoutError`` once the deadline has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise socket.timeout("request not received in time")
        self._sock.settimeout(left)
        try:
            return self._sock.recv(size)
        except socket.timeout:
            self.expired = True
            raise


class _TimeoutRecord(logging.Filter):
    """Turns gunicorn's traceback for a timed-out client into one warning line.

    A slow client is the client's fault, not a server error: an operator needs
    to see that it happened, not a stack trace.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites records that carry a ``TimeoutError``; passes the others unchanged."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TimeoutError):
            record.msg = "closed a connection that did not send its request (or read the answer) within %s s"
            record.args = (self.seconds,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class TimeoutThreadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker with idle connections parked and a deadline per request."""

    #: Seconds a client has to send one whole request (headers and body); set by the launcher.
    read_timeout_s: float = 10.0

    def init_process(self):
        """Installs the log filter, then runs the worker (gunicorn's method never returns)."""
        logging.getLogger("gunicorn.error").addFilter(_TimeoutRecord(self.read_timeout_s))
        super().init_process()

    def accept(self, server, listener):
        """Accepts a connection and parks it in the poller until it is readable."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = TConn(self.cfg, sock, client, server)  # non-blocking until a thread takes it
        self.nr_conns += 1
        # Exactly what gthread does with a kept-alive connection: reuse_connection hands it to
        # a thread when bytes arrive; murder_keepalived closes it after `keepalive` seconds.
        conn.set_timeout()
        with self._lock:
            self._keep.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.reuse_connection, conn))

    def handle(self, conn):
        """Handles one request under the deadline; a connection that ran out of time is closed."""
        conn.sock.settimeout(self.read_timeout_s)  # sends of the answer
        reader = _DeadlineSocket(conn.sock, self.read_timeout_s)
        conn.parser.unreader.sock = reader  # the parser reads headers and body through this
        keepalive, conn = super().handle(conn)
        return (keepalive and not reader.expired, conn)

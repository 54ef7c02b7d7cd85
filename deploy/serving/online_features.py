"""The model server's client of the Feast feature server: the online features of a request's entities.

Plain Python, ``http.client`` only (the serving environment has no Feast; ``requests``
cost a third of a lookup request's CPU in the model server, reading the proxy
environment on every call). One POST to ``/get-online-features`` of the use case's
online feature service for all of a request's entities, on a kept-alive connection
per thread.

Concurrent lookups are coalesced: at most ``max_in_flight`` POSTs per process are
in flight; the requests that arrive meanwhile wait for a free slot together and go as
one POST for all their entities. A request never reads features fetched before it
arrived (its POST starts after it joined), an idle server sends each request's POST at
once, and a busy one asks the feature server a few times per round trip instead of
once per request: the feature server's fixed cost per call is most of a lookup's cost.

One request's ids never fail another's lookup: the model server checks ids before
they get here (:mod:`payload`), and should the feature server still refuse a
coalesced POST with an error answer, each of its requests asks again alone, so
that only the request whose ids it refuses fails. A timeout or a dead connection
is the feature server's state, not an id's: it fails the batch as it is.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from urllib.parse import urlsplit


class FeatureLookupError(RuntimeError):
    """The feature server did not answer usefully: not the caller's mistake (HTTP 503).

    Attributes:
        refused: The feature server answered with an error status (it read the request and
            refused it), rather than not answering at all.
    """

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class _Batch:
    """The entities of the requests that go in one POST, and its outcome."""

    def __init__(self):
        self.ids: set = set()
        self.requests = 0  # lookups that joined
        self.done = threading.Event()
        self.found: dict | None = None
        self.error: FeatureLookupError | None = None


class OnlineFeatures:
    """Reads online features from the feature server at ``url`` (``http://`` or ``https://``).

    Args:
        url: The feature server.
        timeout_s: Deadline of each connect, send and read of a POST.
        max_in_flight: POSTs at once from this process; the lookups beyond wait and are
            coalesced (see the module). ``None``: every lookup posts on its own.
    """

    def __init__(self, url: str, timeout_s: float = 2.0, max_in_flight: int | None = 1):
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"feature server URL {url!r} is not http(s)://host[:port][/path]")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1 (or None), got {max_in_flight}")
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._address = (parts.hostname, parts.port)
        self._path = f"{parts.path}/get-online-features"
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._local = threading.local()
        self._slots = threading.Condition()
        self._in_flight = 0
        self._pending: dict[tuple[str, str], _Batch] = {}
        self._posts = itertools.count(1)
        self.posts = 0  # POSTs sent: fewer than lookups when they were coalesced

    def lookup(self, service: str, entity: str, ids: list) -> dict:
        """The online features of ``service`` for each id of the join key ``entity``: ``{id: {feature: value}}``.

        An id the store has never seen gets its features as the server answers them (``None``).

        Raises:
            FeatureLookupError: On a timeout, a refused connection or an answer of the wrong
                shape (for every request of a coalesced POST), an error status for this lookup's
                own ids (a refused coalesced POST is asked again per lookup), or an answer that
                leaves out one of these ids.
        """
        unique = sorted(set(ids))
        if self.max_in_flight is None:
            found = self._fetch(service, entity, unique)
        else:
            found = self._coalesced(service, entity, unique)
        missing = [i for i in unique if i not in found]
        if missing:
            raise FeatureLookupError(f"feature server {self.url} left out {entity} {missing[:10]}")
        return {i: found[i] for i in unique}

    def _coalesced(self, service: str, entity: str, unique: list) -> dict:
        """Joins the batch waiting for a slot (or opens one and leads it); its answer."""
        key = (service, entity)
        with self._slots:
            batch = self._pending.get(key)
            leader = batch is None
            if leader:
                batch = self._pending[key] = _Batch()
            batch.ids.update(unique)
            batch.requests += 1
            if leader:
                while self._in_flight >= self.max_in_flight:
                    self._slots.wait()
                del self._pending[key]  # closed: a request arriving from now on opens the next batch
                self._in_flight += 1
        if leader:
            try:
                batch.found = self._fetch(service, entity, sorted(batch.ids))
            except FeatureLookupError as exc:
                batch.error = exc
            finally:
                with self._slots:
                    self._in_flight -= 1
                    self._slots.notify()
                batch.done.set()
        else:
            # The batch's leader waits for a slot (one POST in flight) and then sends its own POST,
            # each bounded by the socket deadlines; this bound only guards against a lost leader.
            bound = 4 * self.timeout_s + 1.0
            if not batch.done.wait(bound):
                raise FeatureLookupError(f"feature server {self.url} did not answer a coalesced lookup in {bound:g} s")
        if batch.error is not None:
            if batch.error.refused and batch.requests > 1:
                # Possibly another request's ids: ask again for this request's own (see the module).
                return self._alone(service, entity, unique)
            raise batch.error
        return batch.found

    def _alone(self, service: str, entity: str, unique: list) -> dict:
        """One POST for this lookup's ids only, in a slot of its own."""
        with self._slots:
            while self._in_flight >= self.max_in_flight:
                self._slots.wait()
            self._in_flight += 1
        try:
            return self._fetch(service, entity, unique)
        finally:
            with self._slots:
                self._in_flight -= 1
                self._slots.notify()

    def _fetch(self, service: str, entity: str, unique: list) -> dict:
        """One POST for ``unique`` ids: ``{id: {feature: value}}`` as answered."""
        body = {"feature_service": service, "entities": {entity: unique}, "full_feature_names": False}
        answer = self._post(json.dumps(body).encode())
        try:
            names = answer["metadata"]["feature_names"]
            values = {name: result["values"] for name, result in zip(names, answer["results"])}
            found = {}
            for i, value in enumerate(values[entity]):
                found[type(unique[0])(value) if unique else value] = {
                    name: column[i] for name, column in values.items() if name != entity}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise FeatureLookupError(f"feature server {self.url} answered in an unexpected shape: {exc!r}") from None
        return found

    def _post(self, body: bytes) -> dict:
        """One POST to ``/get-online-features``, retried once on a connection that dropped."""
        self.posts = next(self._posts)
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = self._connection_class(*self._address, timeout=self.timeout_s)
            try:
                connection.request("POST", self._path, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                status, data = response.status, response.read()
                if response.will_close:
                    self._drop(connection)
                break
            except TimeoutError as exc:  # not retried: the caller's deadline is already spent
                self._drop(connection)
                raise FeatureLookupError(f"feature server {self.url} did not answer in {self.timeout_s:g} s: "
                                         f"{type(exc).__name__}: {exc}") from None
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
                # A kept-alive connection that the feature server closed while idle resets when reused
                # (seen under load: 'Connection reset by peer'). The lookup is a read: once more, on a new
                # connection.
                self._drop(connection)
                if attempt == 2:
                    raise FeatureLookupError(
                        f"feature server {self.url} did not answer: {type(exc).__name__}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise FeatureLookupError(f"feature server {self.url} did not answer: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise FeatureLookupError(f"feature server {self.url} answered HTTP {status}: "
                                     f"{data[:300].decode(errors='replace')}", refused=True)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise FeatureLookupError(f"feature server {self.url} answered in an unexpected shape: {exc!r}") from None

    def _drop(self, connection) -> None:
        connection.close()
        self._local.connection = None

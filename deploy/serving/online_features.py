"""The model server's client of the Feast feature server: the online features of a request's entities.

Plain Python and ``requests`` (the serving environment has no Feast). One POST
per request, for all its entities, to ``/get-online-features`` of the use case's
online feature service; a session per thread keeps the connection alive.
"""

from __future__ import annotations

import threading


class FeatureLookupError(RuntimeError):
    """The feature server did not answer usefully: not the caller's mistake (HTTP 503)."""


class OnlineFeatures:
    """Reads online features from the feature server at ``url``."""

    def __init__(self, url: str, timeout_s: float = 2.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def lookup(self, service: str, entity: str, ids: list) -> dict:
        """The online features of ``service`` for each id of the join key ``entity``: ``{id: {feature: value}}``.

        An id the store has never seen gets its features as the server answers them (``None``).

        Raises:
            FeatureLookupError: On a timeout, a refused connection, an error status or an
                answer of the wrong shape.
        """
        unique = sorted(set(ids))
        body = {"feature_service": service, "entities": {entity: unique}, "full_feature_names": False}
        answer = self._post(body)
        try:
            names = answer["metadata"]["feature_names"]
            values = {name: result["values"] for name, result in zip(names, answer["results"])}
            found = {}
            for i, value in enumerate(values[entity]):
                found[type(unique[0])(value) if unique else value] = {
                    name: column[i] for name, column in values.items() if name != entity}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise FeatureLookupError(f"feature server {self.url} answered in an unexpected shape: {exc!r}") from None
        missing = [i for i in unique if i not in found]
        if missing:
            raise FeatureLookupError(f"feature server {self.url} left out {entity} {missing[:10]}")
        return found

    def _post(self, body: dict) -> dict:
        """One POST to ``/get-online-features``, retried once on a reset kept-alive connection."""
        import requests

        response = None
        for attempt in (1, 2):
            try:
                response = self._session().post(f"{self.url}/get-online-features", json=body, timeout=self.timeout_s)
                break
            except requests.ConnectionError as exc:
                # A kept-alive connection that the feature server closed while idle resets when reused
                # (seen under load: 'Connection reset by peer'). The lookup is a read: once more, on a new
                # connection. A timeout is not retried (the caller's deadline is already spent).
                self._local.session = None
                if attempt == 2 or isinstance(exc, requests.Timeout):
                    raise FeatureLookupError(
                        f"feature server {self.url} did not answer: {type(exc).__name__}: {exc}") from None
            except requests.RequestException as exc:
                raise FeatureLookupError(f"feature server {self.url} did not answer: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise FeatureLookupError(f"feature server {self.url} answered HTTP {response.status_code}: "
                                     f"{response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise FeatureLookupError(f"feature server {self.url} answered in an unexpected shape: {exc!r}") from None

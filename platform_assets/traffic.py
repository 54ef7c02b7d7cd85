"""A bounded client that sends applications to the model server as its callers do.

Plain functions, no Dagster. Each application is one request carrying the
application's own fields and its entity ids (the server looks up the history);
at most ``concurrency`` requests are in flight, so a simulation or a benchmark
never floods the server, and every request has its own id (``meta.puid``), which
the server logs with the prediction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from platform_assets.deploy.serving import PREDICT_PATH, _plain
from platform_assets.domain import COLUMNS, LABEL, PII_COLUMNS, PROTECTED_ATTRIBUTE

# What a caller knows when it asks: the application's own fields and its ids; never the
# personal data, the protected attribute or the outcome.
REQUEST_FIELDS = tuple(c for c in COLUMNS if c not in (*PII_COLUMNS, PROTECTED_ATTRIBUTE, LABEL, "label_ts"))


@dataclass
class TrafficResult:
    """What happened to the requests of one batch of traffic."""

    sent: int = 0
    answered: int = 0
    # HTTP status (or exception name) -> count, for the requests that were not answered with 200.
    errors: Counter = field(default_factory=Counter)
    # application_id -> request id, for every request sent.
    request_ids: dict[str, str] = field(default_factory=dict)
    # application_id -> probability, for the answered ones.
    probabilities: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def latency_ms(self, quantile: float) -> float | None:
        """A latency quantile of the answered requests (``None`` without any)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def request_body(application: dict, request_id: str) -> dict:
    """The Seldon JSON message for one application (its own fields and ids, no history)."""
    names = [n for n in REQUEST_FIELDS if n in application]
    return {"data": {"names": names, "ndarray": [[_plain(application[n]) for n in names]]}, "meta": {"puid": request_id}}


def send_applications(
    url: str, applications: pd.DataFrame, concurrency: int = 8, timeout_s: float = 10.0
) -> TrafficResult:
    """Sends each application as one request, at most ``concurrency`` at a time.

    Args:
        url: The model server's base URL.
        applications: One row per application, with the :data:`REQUEST_FIELDS` columns.
        concurrency: Requests in flight at most.
        timeout_s: Per-request timeout.

    Returns:
        Counts, errors by status, the request id of every application and the
        answered probabilities. Caller mistakes in the data (an invalid row gets
        400) are counted, not raised.
    """
    import requests

    result = TrafficResult()
    local = threading.local()
    lock = threading.Lock()

    def send(application: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = session.post(url + PREDICT_PATH, json=request_body(application, request_id), timeout=timeout_s)
            status = response.status_code
            probability = float(response.json()["data"]["ndarray"][0][0]) if status == 200 else None
        except (requests.RequestException, ValueError, KeyError, IndexError) as exc:
            status, probability = type(exc).__name__, None
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        with lock:
            result.sent += 1
            result.request_ids[str(application["application_id"])] = request_id
            if probability is None:
                result.errors[status] += 1
            else:
                result.answered += 1
                result.probabilities[str(application["application_id"])] = probability
                result.latencies_ms.append(elapsed_ms)

    rows = applications[[c for c in REQUEST_FIELDS if c in applications.columns]].to_dict("records")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for _ in pool.map(send, rows):
            pass
    result.seconds = time.perf_counter() - started
    return result

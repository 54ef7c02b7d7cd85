"""A bounded client that sends a source's rows to the model server as its callers do.

Plain functions, no Dagster. Each row is one request carrying the row's own
fields and its entity ids (the server looks up what the online store holds);
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

from platform_assets.declarations import Source
from platform_assets.deploy.serving import PREDICT_PATH, _plain


def request_fields(source: Source) -> tuple[str, ...]:
    """What a caller knows when it asks: the row's own fields and its ids; never the
    personal data, the protected attributes or the outcome (and its time)."""
    withheld = {*source.pii, *source.protected, source.label, source.label_time}
    return tuple(c for c in source.columns if c not in withheld)


@dataclass
class TrafficResult:
    """What happened to the requests of one batch of traffic."""

    sent: int = 0
    answered: int = 0
    # HTTP status (or exception name) -> count, for the requests that were not answered with 200.
    errors: Counter = field(default_factory=Counter)
    # The row's key -> request id, for every request sent.
    request_ids: dict[str, str] = field(default_factory=dict)
    # The row's key -> probability, for the answered ones.
    probabilities: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def latency_ms(self, quantile: float) -> float | None:
        """A latency quantile of the answered requests (``None`` without any)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def request_body(row: dict, request_id: str, fields: tuple[str, ...]) -> dict:
    """The Seldon JSON message for one row (its ``fields`` that it has, no looked-up features)."""
    names = [n for n in fields if n in row]
    return {"data": {"names": names, "ndarray": [[_plain(row[n]) for n in names]]}, "meta": {"puid": request_id}}


def send_requests(
    url: str, rows: pd.DataFrame, source: Source, concurrency: int = 8, timeout_s: float = 10.0
) -> TrafficResult:
    """Sends each row of ``source`` as one request, at most ``concurrency`` at a time.

    Args:
        url: The model server's base URL.
        rows: One row per request, with the :func:`request_fields` columns (others are not sent).
        source: The declared source the rows are of.
        concurrency: Requests in flight at most.
        timeout_s: Per-request timeout.

    Returns:
        Counts, errors by status, the request id of every row (by its key) and
        the answered probabilities. Caller mistakes in the data (an invalid row
        gets 400) are counted, not raised.
    """
    import requests

    result = TrafficResult()
    local = threading.local()
    lock = threading.Lock()

    fields, key = request_fields(source), source.key

    def send(row: dict) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = session.post(url + PREDICT_PATH, json=request_body(row, request_id, fields), timeout=timeout_s)
            status = response.status_code
            probability = float(response.json()["data"]["ndarray"][0][0]) if status == 200 else None
        except (requests.RequestException, ValueError, KeyError, IndexError) as exc:
            status, probability = type(exc).__name__, None
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        with lock:
            result.sent += 1
            result.request_ids[str(row[key])] = request_id
            if probability is None:
                result.errors[status] += 1
            else:
                result.answered += 1
                result.probabilities[str(row[key])] = probability
                result.latencies_ms.append(elapsed_ms)

    records = rows[[c for c in fields if c in rows.columns]].to_dict("records")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for _ in pool.map(send, records):
            pass
    result.seconds = time.perf_counter() - started
    return result


def replay_day(use_case, day: str | None = None, concurrency: int = 8) -> tuple[str, TrafficResult]:
    """Sends ``day``'s validated rows (default: the newest day) to ``use_case``'s deployed server.

    Returns a line saying what was sent and answered, and the result. The newest day replays without skew:
    the online store holds nothing after it.
    """
    import json

    from platform_assets import settings
    from platform_assets.warehouse import profile_warehouse

    source, own = use_case.source, settings.paths().of(use_case.name)
    deployment = json.loads((own.serving / "deployment.json").read_text())
    with profile_warehouse().connect(read_only=True) as con:
        day = day or con.execute(f"SELECT max(_partition) FROM {source.validated_table}").fetchone()[0]
        rows = con.execute(f"SELECT * FROM {source.validated_table} WHERE _partition = ?", [day]).df()
    result = send_requests(deployment["url"], rows, source, concurrency=concurrency)
    text = (f"{use_case.name} {day}: sent {result.sent}, answered {result.answered}, errors {dict(result.errors)}, "
            f"p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms; "
            f"logged under {own.inference / f'day={day}'}")
    return text, result

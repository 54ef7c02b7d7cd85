"""Seldon Core 1.x model class of any declared use case: a model bundle (safetensors weights, JSON preprocessing).

Run with ``python model_server.py PlatformModel`` with ``MODEL_DIR`` pointing at the
bundle, ``USE_CASE`` naming the use case (``platform_assets/defs/<name>/defs.yaml``;
the deployment passes the declaration itself in ``USE_CASE_DECLARATION``, so a use
case declared elsewhere is served too) and the project root and this directory on ``PYTHONPATH``. Requests are checked by
:mod:`payload`.

A caller sends the row's own fields with its key (the use case's source key): the
model inputs the row does not carry are the use case's request features
(``request_features`` in the declaration), computed per row from its fields and,
when the module names an ``ONLINE_ENTITY``, that entity's online features from the
Feast feature server (``FEATURE_SERVER_URL``). A request without the key must carry
every model input (the deployment's own checks send those); it is scored as it is.
Either form is held to the source's declared rules (the bounds its validation
quarantines rows by); a caller's row also to the ids and event times the platform
stores and partitions.

Each scored row is appended to the inference log (``INFERENCE_LOG_DIR``) before the
answer; the platform's own smoke traffic (``X-Platform-Traffic: smoke``, which the
server puts in :data:`payload.traffic`) to ``INFERENCE_LOG_DIR/smoke`` instead, which
monitoring never reads.
"""

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import payload
from inference_log import InferenceLog, InferenceLogError
from online_features import FeatureLookupError, OnlineFeatures
from platform_assets import config
from platform_assets.declarations import use_case_from_dict
from platform_assets.declared import use_case as declared_use_case
from platform_assets.ingest.partitions import partitions_start
from platform_assets.train.network import BUNDLE_FILE, WEIGHTS_FILE, load_bundle

# Seldon's reasons of a 503: the server's dependencies failed, not the caller's data (Seldon's default,
# MICROSERVICE_BAD_DATA, would blame the caller).
FEATURES_UNAVAILABLE = "FEATURES_UNAVAILABLE"
INFERENCE_LOG_UNAVAILABLE = "INFERENCE_LOG_UNAVAILABLE"


def _iso_utc(epoch_s: float) -> str:
    """An event time as the log writes it: ISO 8601, UTC, without an offset."""
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).replace(tzinfo=None).isoformat()


def _floats(values) -> list[float]:
    """A numeric input column as Python floats (the columns are float64 arrays; computed ones may be lists)."""
    return values.tolist() if isinstance(values, np.ndarray) and values.dtype == np.float64 \
        else np.asarray(values, dtype=np.float64).tolist()


@dataclass
class Scored:
    """The outcome of scoring one request: inputs used, where they came from, and outputs."""

    probabilities: np.ndarray
    columns: dict
    source: str  # "online": a caller's row (its features completed here); "request": every input was sent
    ids: dict  # id column -> one id per row (None where not sent)
    times: list  # epoch seconds of each row's event (its event time, else arrival)


class PlatformModel:
    """Probability of the use case's label for its rows, tagged with the model version, every answer logged."""

    def __init__(self, model_dir=None):
        """Checks the bundle, reads the use case's declaration; the weights load in :meth:`load`.

        Raises:
            FileNotFoundError: If the bundle is incomplete, so the server fails at start.
            DeclarationError: If ``USE_CASE`` names no declared use case (or ``USE_CASE_DECLARATION``,
                the declaration the deployment passes, cannot be read).
        """
        self.model_dir = Path(model_dir or config.get("MODEL_DIR") or "")
        missing = [f for f in (WEIGHTS_FILE, BUNDLE_FILE) if not (self.model_dir / f).is_file()]
        if missing:
            raise FileNotFoundError(f"model bundle {self.model_dir} (MODEL_DIR) has no {missing}")
        metadata = json.loads((self.model_dir / BUNDLE_FILE).read_text()).get("metadata", {})
        self._name = config.get("MODEL_NAME") or str(metadata.get("model_name", "unknown"))
        self._role = config.get("SERVING_ROLE")  # stable, canary or shadow (a release's role), if any
        self._version = config.get("MODEL_VERSION") or str(metadata.get("model_version", "unknown"))
        declaration = config.get("USE_CASE_DECLARATION")
        self.use_case = (use_case_from_dict(json.loads(declaration), "USE_CASE_DECLARATION") if declaration
                         else declared_use_case(config.get("USE_CASE")))
        self.features = self.use_case.request_features_module()
        self._ids = {column: (kind, True) for column, kind in self.use_case.id_columns().items()}
        self.rules = self.use_case.source.declared_rules()
        start = dt.date.fromisoformat(partitions_start())
        self._earliest = dt.datetime(start.year, start.month, start.day, tzinfo=dt.timezone.utc).timestamp()
        self._bundle = None
        self._request_path = None  # Seldon's, read at the first answer
        log_dir = config.get("INFERENCE_LOG_DIR")
        self._log = InferenceLog(log_dir) if log_dir else None
        self._smoke_log = InferenceLog(Path(log_dir) / "smoke") if log_dir else None
        url = config.get("FEATURE_SERVER_URL")
        timeout = config.get_float("FEATURE_LOOKUP_TIMEOUT_S")
        in_flight = config.get_int("FEATURE_LOOKUP_IN_FLIGHT")  # 0: no coalescing (online_features)
        self._online = OnlineFeatures(url, timeout, in_flight or None) if url else None

    def load(self):
        """Loads the network; Seldon calls this in each worker process, after forking."""
        if self._bundle is None:
            self._bundle = load_bundle(self.model_dir)
            pre = self._bundle.preprocessor
            self._categories = {c: pre.categories[c] for c in pre.categorical}

    @property
    def _online_entity(self) -> str | None:
        return getattr(self.features, "ONLINE_ENTITY", None) if self.features else None

    def id_columns(self) -> dict:
        """Id column -> (kind, required) of a caller's row: the source key, and the online entity if any."""
        return dict(self._ids)

    def predict_raw(self, request):
        """Scores a Seldon JSON request; a caller mistake is HTTP 400 naming the field and rows.

        Returns:
            Seldon's response message: ``data.ndarray`` (one probability per row), ``meta.tags``
            naming the model and version, and ``meta.puid``, the request id the rows were logged under.

        Raises:
            SeldonMicroserviceException: 400 for a caller mistake; 503 when the feature server or
                the inference log failed (nothing is answered that was not logged), with a reason
                (:data:`FEATURES_UNAVAILABLE`, :data:`INFERENCE_LOG_UNAVAILABLE`) that names it.
        """
        from seldon_core.flask_utils import SeldonMicroserviceException

        received, started = time.time(), time.perf_counter()
        try:
            request_id = payload.request_id(request) or os.urandom(16).hex()
            scored = self.score_request(request, received)
        except payload.RequestError as exc:
            raise SeldonMicroserviceException(str(exc), status_code=400) from None
        except FeatureLookupError as exc:
            raise SeldonMicroserviceException(f"online features unavailable: {exc}", status_code=503,
                                              reason=FEATURES_UNAVAILABLE) from None
        # Any mark of the platform's own traffic (smoke tests, checks) keeps it out of the production log.
        log = self._smoke_log if payload.traffic.get() else self._log
        if log is not None:
            latency_ms = (time.perf_counter() - started) * 1000.0
            served_at = dt.datetime.now(dt.timezone.utc)
            try:
                if len(scored.times) == 1:  # most requests: one record, written as it is built
                    log.write_record(self.log_record(request_id, scored, served_at, latency_ms), served_at)
                else:
                    same, each = self.log_fields(request_id, scored, served_at, latency_ms)
                    log.write(len(scored.times), same, each, served_at)
            except InferenceLogError as exc:
                raise SeldonMicroserviceException(f"prediction not answered: {exc}", status_code=503,
                                                  reason=INFERENCE_LOG_UNAVAILABLE) from None
        return self.response(request_id, scored.probabilities)

    def response(self, request_id: str, probabilities: np.ndarray) -> dict:
        """Seldon's answer to a JSON request, as ``seldon_core.utils.construct_response_json`` builds it for
        this model (one probability per row, ``meta.tags``, ``meta.puid``, Seldon's ``requestPath`` when its
        container sets one), without its general path."""
        if self._request_path is None:
            from seldon_core.utils import get_request_path

            self._request_path = get_request_path()
        meta = {"tags": self.tags(), "puid": request_id}
        if self._request_path:
            meta["requestPath"] = dict(self._request_path)
        return {"data": {"ndarray": probabilities.reshape(-1, 1).tolist(), "names": self.class_names()}, "meta": meta}

    def score(self, message):
        """Probabilities for the rows of a JSON request (see :meth:`score_request`)."""
        return self.score_request(message, time.time()).probabilities

    def score_request(self, message, received_at: float) -> Scored:
        """Scores a request of either form, every input and output checked.

        Raises:
            payload.RequestError: Naming the field, rows and columns at fault.
            FeatureLookupError: If the online features cannot be looked up.
        """
        self.load()  # Seldon swallows AttributeError from load(): load here so such an error surfaces.
        pre, categories = self._bundle.preprocessor, self._categories
        names, rows = payload.names_and_rows(message)
        if self.use_case.source.key in names:
            scored = self._row_columns(message, pre.numeric, categories, received_at)
        else:
            try:
                columns = payload.checked_model_columns(names, rows, pre.numeric, categories, self.rules)
            except payload.RequestError as exc:
                if all(c in names for c in [*pre.numeric, *categories]):
                    raise  # a bad value: the other form would not help
                raise payload.RequestError(
                    f"{exc}; or send the row's own fields with its {self.use_case.source.key}"
                ) from None
            scored = Scored(None, columns, "request", {c: [None] * len(rows) for c in self._ids},
                            [received_at] * len(rows))
        columns = scored.columns
        with payload.quiet_numpy():  # overflow is reported as a 400, not a warning
            encoded = pre.transform_one(columns) if len(scored.times) == 1 else pre.transform(columns)
            payload.check_encoded(encoded, pre.numeric, columns)
            probabilities = self._bundle.predict_encoded(encoded)
        payload.check_output(probabilities)
        scored.probabilities = probabilities
        return scored

    def _row_columns(self, message, numeric, categories, received_at: float) -> Scored:
        """A caller's row: its fields, the request features computed, online features looked up."""
        computed = set(getattr(self.features, "COMPUTED", ())) if self.features else set()
        own = [c for c in numeric if c not in computed]
        own += [c for c in getattr(self.features, "NEEDS", ()) if c not in own]
        columns, ids, times = payload.row_columns(message, own, categories, received_at, self._ids,
                                                  self.use_case.source.event_time, self.rules, self._earliest)
        if computed:
            online = {}
            if self._online_entity:
                if self._online is None:
                    raise FeatureLookupError("this server has no FEATURE_SERVER_URL to look features up; "
                                             "send every model input instead")
                online = self._online.lookup(self.use_case.online_feature_service, self._online_entity,
                                             ids[self._online_entity])
            rows = []
            for r in range(len(times)):
                fields = {c: columns[c][r] for c in getattr(self.features, "NEEDS", ())}
                entity = ids[self._online_entity][r] if self._online_entity else None
                rows.append(self.features.compute(fields, online.get(entity), times[r]))
            for name in numeric:
                if name in computed:
                    columns[name] = np.array([row[name] for row in rows], dtype=np.float64)
        return Scored(None, columns, "online", ids, times)

    def log_fields(self, request_id: str, scored: Scored, served_at: dt.datetime,
                   latency_ms: float) -> tuple[dict, dict]:
        """The inference-log fields of a request's rows: ``(same, each)`` for :meth:`InferenceLog.write`.

        One record per scored row: ids, times, model, every input used, output; ``same``
        holds the fields every row shares, ``each`` a list of one value per row.
        """
        pre = self._bundle.preprocessor
        events: dict[float, str] = {}  # the rows of a request mostly share one time
        for when in scored.times:
            if when not in events:
                events[when] = _iso_utc(when)
        rows = len(scored.times)
        same = {"request_id": request_id, "served_at": served_at.isoformat(), "model_name": self._name,
                "model_version": self._version, "feature_source": scored.source,
                **({"role": self._role} if self._role else {}), "latency_ms": round(latency_ms, 3)}
        each = {"row": list(range(rows)), "event_ts": [events[when] for when in scored.times],
                **{column: list(values) for column, values in scored.ids.items()}}
        each.update({c: _floats(scored.columns[c]) for c in pre.numeric})
        each.update({c: [str(v) for v in scored.columns[c]] for c in pre.categorical})
        each["probability"] = scored.probabilities.reshape(-1).tolist()
        return same, each

    def log_record(self, request_id: str, scored: Scored, served_at: dt.datetime, latency_ms: float) -> dict:
        """The inference-log record of a one-row request: the fields of :meth:`log_fields`, in its order."""
        pre = self._bundle.preprocessor
        record = {"request_id": request_id, "served_at": served_at.isoformat(), "model_name": self._name,
                  "model_version": self._version, "feature_source": scored.source}
        if self._role:
            record["role"] = self._role
        record.update(latency_ms=round(latency_ms, 3), row=0, event_ts=_iso_utc(scored.times[0]))
        for column, values in scored.ids.items():
            record[column] = values[0]
        for column in pre.numeric:
            record[column] = float(scored.columns[column][0])
        for column in pre.categorical:
            record[column] = str(scored.columns[column][0])
        record["probability"] = float(scored.probabilities.reshape(-1)[0])
        return record

    def class_names(self):
        """Name of the single output column (``data.names`` in the response)."""
        return [f"probability_of_{self.use_case.label}"]

    def tags(self):
        """Returned in every response's ``meta.tags``: which model answered."""
        return {"model_name": self._name, "model_version": self._version}

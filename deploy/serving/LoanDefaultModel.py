"""Seldon Core 1.x model class: serves a model bundle (safetensors weights, JSON preprocessing).

Run with ``python model_server.py LoanDefaultModel`` (or Seldon's own
``seldon-core-microservice LoanDefaultModel``) with ``MODEL_DIR`` pointing at the
bundle and the project root and this directory on ``PYTHONPATH``. Requests are
checked by :mod:`payload`.
"""

import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import payload
from inference_log import InferenceLog, InferenceLogError
from online_features import FeatureLookupError, OnlineFeatures
from platform_assets.features.history import DERIVED_FEATURES, HISTORY_FEATURES, derived_features, history_features
from platform_assets.train.network import BUNDLE_FILE, WEIGHTS_FILE, load_bundle

# Fields an application must carry for the server to derive the ratio features.
RATIO_FIELDS = ("income", "loan_amount", "term_months")


@dataclass
class Scored:
    """The outcome of scoring one request: inputs used, where they came from, and outputs."""

    probabilities: np.ndarray
    columns: dict
    source: str  # "online": history from the feature server; "request": every input was sent
    applicant_ids: list
    application_ids: list
    times: list  # epoch seconds of each row's event (its application time, else arrival)


class LoanDefaultModel:
    """Probability of default for applications, tagged with the model version, every answer logged.

    Callers send the application's own fields and its ``applicant_id``; the
    applicant's history comes from the Feast feature server (``FEATURE_SERVER_URL``)
    as of the start of the application's day, the ratios from the fields. A
    request that carries every model input is scored as it is. Each scored row
    is appended to the inference log (``INFERENCE_LOG_DIR``) before the answer.
    """

    def __init__(self, model_dir=None):
        """Checks the bundle and reads its name and version; the weights load in :meth:`load`.

        Args:
            model_dir: The bundle directory (Seldon ``parameters``); default: env ``MODEL_DIR``.

        Raises:
            FileNotFoundError: If the bundle is incomplete, so the server fails at start.
        """
        self.model_dir = Path(model_dir or os.environ.get("MODEL_DIR", ""))
        missing = [f for f in (WEIGHTS_FILE, BUNDLE_FILE) if not (self.model_dir / f).is_file()]
        if missing:
            raise FileNotFoundError(f"model bundle {self.model_dir} (MODEL_DIR) has no {missing}")
        metadata = json.loads((self.model_dir / BUNDLE_FILE).read_text()).get("metadata", {})
        self._name = os.environ.get("MODEL_NAME") or str(metadata.get("model_name", "unknown"))
        self._version = os.environ.get("MODEL_VERSION") or str(metadata.get("model_version", "unknown"))
        self._bundle = None
        log_dir = os.environ.get("INFERENCE_LOG_DIR")
        self._log = InferenceLog(log_dir) if log_dir else None
        url = os.environ.get("FEATURE_SERVER_URL")
        timeout = float(os.environ.get("FEATURE_LOOKUP_TIMEOUT_S", "2"))
        self._online = OnlineFeatures(url, timeout) if url else None

    def load(self):
        """Loads the network; Seldon calls this in each worker process, after forking."""
        if self._bundle is None:
            self._bundle = load_bundle(self.model_dir)

    def predict_raw(self, request):
        """Scores a Seldon JSON request (Seldon prefers this to ``predict`` when it exists).

        Handling the raw message lets every caller mistake (a wrong shape, a missing
        column, a bad value) be answered with 400 naming the field and the rows,
        before Seldon's own parsing (which makes text of every number in a row that
        holds a category) can fail on it with a 500. A gRPC message is refused the same way.

        Args:
            request: The parsed JSON body: ``{"data": {"names": [...], "ndarray": [[...], ...]},
                "meta": {"puid": "<request id>"}}``; other request ``meta`` is not echoed (it
                would let a caller write the server's metrics, and tags are the model's to set).

        Returns:
            Seldon's response message: ``data.names``, ``data.ndarray`` (one probability
            per row), ``meta.tags`` naming the model and version, and ``meta.puid``, the
            request id under which the rows were logged (generated when none was sent).

        Raises:
            SeldonMicroserviceException: HTTP 400 (``MICROSERVICE_BAD_DATA``) for a caller
                mistake; 503 when the feature server or the inference log failed (nothing is
                answered that was not logged).
        """
        from seldon_core.flask_utils import SeldonMicroserviceException
        from seldon_core.utils import construct_response_json

        received, started = time.time(), time.perf_counter()
        try:
            meta = request.get("meta") if isinstance(request, dict) else None
            if meta is not None and not isinstance(meta, dict):
                raise payload.RequestError(f"'meta' must be an object, got {type(meta).__name__}")
            puid = (meta or {}).get("puid")
            request_id = puid if isinstance(puid, str) and puid.strip() else uuid.uuid4().hex
            scored = self.score_request(request, received)
        except payload.RequestError as exc:
            raise SeldonMicroserviceException(str(exc), status_code=400) from None
        except FeatureLookupError as exc:
            raise SeldonMicroserviceException(f"history features unavailable: {exc}", status_code=503) from None
        if self._log is not None:
            latency_ms = (time.perf_counter() - started) * 1000.0
            served_at = dt.datetime.now(dt.timezone.utc)
            try:
                self._log.write(self.log_records(request_id, scored, served_at, latency_ms), served_at)
            except InferenceLogError as exc:
                raise SeldonMicroserviceException(f"prediction not answered: {exc}", status_code=503) from None
        kept = {"puid": request_id}
        return construct_response_json(
            self, False, {"data": {}, "meta": kept}, scored.probabilities.reshape(-1, 1), kept
        )

    def score(self, message):
        """Probabilities of default for the rows of a JSON request (see :meth:`score_request`)."""
        return self.score_request(message, time.time()).probabilities

    def score_request(self, message, received_at: float) -> Scored:
        """Scores a request of either form, every input and output checked.

        Raises:
            payload.RequestError: Naming the field, rows and columns at fault: a malformed
                message, a missing column, a non-number or non-finite number in a numeric
                column, a null or unknown category, a bad id or time, a value too large for
                the network, or rows whose probability is not finite.
            FeatureLookupError: If the history cannot be looked up.
        """
        # Seldon swallows AttributeError from load(): load here so such an error surfaces.
        self.load()
        pre = self._bundle.preprocessor
        categories = {c: pre.categories[c] for c in pre.categorical}
        form = payload.request_form(message, [*pre.numeric, *pre.categorical])
        if form == "application" and "applicant_id" not in payload.names_and_rows(message)[0]:
            try:  # neither form: name the model inputs that are missing, and the other way
                payload.model_columns(message, pre.numeric, categories)
            except payload.RequestError as exc:
                raise payload.RequestError(
                    f"{exc}; or send the application's own fields with its applicant_id (its history is looked up)"
                ) from None
        if form == "features":
            columns = payload.model_columns(message, pre.numeric, categories)
            rows = len(next(iter(columns.values())))
            scored = Scored(None, columns, "request", [None] * rows, [None] * rows, [received_at] * rows)
        else:
            scored = self._application_columns(message, pre.numeric, categories, received_at)
        columns = scored.columns
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as a 400, not a warning
            payload.check_encoded(pre.transform(columns), pre.numeric, columns)
            probabilities = self._bundle.predict_proba(columns)
        payload.check_output(probabilities)
        scored.probabilities = probabilities
        return scored

    def _application_columns(self, message, numeric, categories, received_at: float) -> Scored:
        """The model inputs of an application-form request: its fields, ratios, and history looked up."""
        computed = set(HISTORY_FEATURES) | set(DERIVED_FEATURES)
        own = [c for c in numeric if c not in computed]
        own += [c for c in RATIO_FIELDS if c not in own]
        columns, applicants, applications, times = payload.application_columns(message, own, categories, received_at)
        if self._online is None:
            raise FeatureLookupError(
                "this server has no FEATURE_SERVER_URL to look history up; send every model input instead"
            )
        activity = self._online.activity(applicants)
        rows = []
        for r, applicant in enumerate(applicants):
            history = history_features(*activity[applicant], times[r])
            ratios = derived_features(*(columns[c][r] for c in RATIO_FIELDS))
            rows.append({**history, **ratios})
        for name in numeric:
            if name in computed:
                columns[name] = np.array([row[name] for row in rows], dtype=np.float64)
        return Scored(None, columns, "online", applicants, applications, times)

    def log_records(self, request_id: str, scored: Scored, served_at: dt.datetime, latency_ms: float) -> list:
        """One inference-log record per scored row: ids, times, model, every input used, output."""
        pre = self._bundle.preprocessor
        records = []
        for r, probability in enumerate(scored.probabilities.reshape(-1)):
            event = dt.datetime.fromtimestamp(scored.times[r], dt.timezone.utc).replace(tzinfo=None)
            record = {
                "request_id": request_id, "row": r, "served_at": served_at.isoformat(),
                "event_ts": event.isoformat(), "model_name": self._name, "model_version": self._version,
                "application_id": scored.application_ids[r], "applicant_id": scored.applicant_ids[r],
                "feature_source": scored.source,
            }
            record.update({c: float(scored.columns[c][r]) for c in pre.numeric})
            record.update({c: str(scored.columns[c][r]) for c in pre.categorical})
            record.update({"probability": float(probability), "latency_ms": round(latency_ms, 3)})
            records.append(record)
        return records

    def class_names(self):
        """Name of the single output column (``data.names`` in the response)."""
        return ["probability_of_default"]

    def tags(self):
        """Returned in every response's ``meta.tags``: which model answered."""
        return {"model_name": self._name, "model_version": self._version}

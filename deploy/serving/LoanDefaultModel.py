"""Seldon Core 1.x model class: serves a model bundle (safetensors weights, JSON preprocessing).

Run with ``python model_server.py LoanDefaultModel`` (or Seldon's own
``seldon-core-microservice LoanDefaultModel``) with ``MODEL_DIR`` pointing at the
bundle and the project root and this directory on ``PYTHONPATH``. Requests are
checked by :mod:`payload`.
"""

import json
import os
from pathlib import Path

import numpy as np

import payload
from platform_assets.train.network import BUNDLE_FILE, WEIGHTS_FILE, load_bundle


class LoanDefaultModel:
    """Probability of default for rows of raw features, tagged with the model version."""

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
            request: The parsed JSON body: ``{"data": {"names": [...], "ndarray": [[...], ...]}}``;
                ``meta.puid`` is echoed, other request ``meta`` is not (it would let a
                caller write the server's metrics, and tags are the model's to set).

        Returns:
            Seldon's response message: ``data.names``, ``data.ndarray`` (one probability
            per row) and ``meta.tags`` naming the model and version.

        Raises:
            SeldonMicroserviceException: HTTP 400 (``MICROSERVICE_BAD_DATA``) for a caller mistake.
        """
        from seldon_core.flask_utils import SeldonMicroserviceException
        from seldon_core.utils import construct_response_json

        try:
            meta = request.get("meta") if isinstance(request, dict) else None
            if meta is not None and not isinstance(meta, dict):
                raise payload.RequestError(f"'meta' must be an object, got {type(meta).__name__}")
            puid = (meta or {}).get("puid")
            kept = {"puid": puid} if isinstance(puid, str) else {}
            probabilities = self.score(request)
        except payload.RequestError as exc:
            raise SeldonMicroserviceException(str(exc), status_code=400) from None
        return construct_response_json(self, False, {"data": {}, "meta": kept}, probabilities.reshape(-1, 1), kept)

    def score(self, message):
        """Probabilities of default for the rows of a JSON request, every input and output checked.

        Raises:
            payload.RequestError: Naming the field, rows and columns at fault: a malformed
                message, a missing column, a non-number or non-finite number in a numeric
                column, a null or unknown category, a value too large for the network, or
                rows whose probability is not finite.
        """
        # Seldon swallows AttributeError from load(): load here so such an error surfaces.
        self.load()
        pre = self._bundle.preprocessor
        columns = payload.model_columns(message, pre.numeric, {c: pre.categories[c] for c in pre.categorical})
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as a 400, not a warning
            payload.check_encoded(pre.transform(columns), pre.numeric, columns)
            probabilities = self._bundle.predict_proba(columns)
        payload.check_output(probabilities)
        return probabilities

    def class_names(self):
        """Name of the single output column (``data.names`` in the response)."""
        return ["probability_of_default"]

    def tags(self):
        """Returned in every response's ``meta.tags``: which model answered."""
        return {"model_name": self._name, "model_version": self._version}

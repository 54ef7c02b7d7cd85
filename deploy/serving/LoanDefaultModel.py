"""Seldon Core 1.x model class: serves a model bundle (safetensors weights, JSON preprocessing).

Run with ``seldon-core-microservice LoanDefaultModel`` from this directory, with
``MODEL_DIR`` pointing at the bundle and the project root on ``PYTHONPATH``.
"""

import json
import os
from pathlib import Path

import numpy as np

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

    def predict(self, X, features_names=None, **kwargs):
        """Scores rows ``X`` whose columns are named by ``features_names``.

        Args:
            X: Rows of feature values. Seldon turns a mixed JSON ndarray into an
                array of strings, so numeric columns are converted here.
            features_names: Column names of ``X``, in any order; extra columns are ignored.
            **kwargs: Seldon passes ``meta``; accepted so Seldon does not retry
                without it after a ``TypeError``.

        Returns:
            One probability of default per row, shape (n, 1).

        Raises:
            ValueError: If a column the model needs is absent, or a numeric one is not numeric or missing.
        """
        # Seldon swallows AttributeError from load(): load here so such an error surfaces.
        self.load()
        pre = self._bundle.preprocessor
        rows = np.asarray(X, dtype=object)
        if rows.size == 0:
            return np.empty((0, 1))
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        names = list(features_names or [])
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise ValueError(f"got rows of shape {rows.shape} for {len(names)} column names {names}")
        missing = [c for c in pre.input_names if c not in names]
        if missing:
            raise ValueError(f"request is missing columns {missing}; the model needs {pre.input_names}")
        columns = {c: rows[:, names.index(c)] for c in pre.input_names}
        for c in pre.numeric:
            try:
                columns[c] = columns[c].astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {c!r} must be numeric: {exc}") from None
            gaps = np.flatnonzero(np.isnan(columns[c]))  # None arrives as NaN: no silent NaN probability
            if gaps.size:
                raise ValueError(f"column {c!r} has missing values (rows {gaps[:10].tolist()})")
        return self._bundle.predict_proba(columns).reshape(-1, 1)

    def class_names(self):
        """Name of the single output column (``data.names`` in the response)."""
        return ["probability_of_default"]

    def tags(self):
        """Returned in every response's ``meta.tags``: which model answered."""
        return {"model_name": self._name, "model_version": self._version}

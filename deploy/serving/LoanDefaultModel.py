"""Seldon Core 1.x model class: serves a model bundle (safetensors weights, JSON preprocessing)."""

import os

import numpy as np

from platform_assets.train.network import load_bundle


class LoanDefaultModel:
    """Probability of default for rows of raw features, tagged with the model version."""

    def __init__(self):
        self._bundle = load_bundle(os.environ["MODEL_DIR"])
        metadata = self._bundle.metadata
        self._name = os.environ.get("MODEL_NAME") or metadata.get("model_name", "unknown")
        self._version = os.environ.get("MODEL_VERSION") or str(metadata.get("model_version", "unknown"))

    def predict(self, X, features_names=None):
        """Scores rows ``X`` whose columns are named by ``features_names``.

        Args:
            X: Rows of feature values (numbers and strings).
            features_names: Column names of ``X``.

        Returns:
            One probability per row, shape (n, 1).

        Raises:
            ValueError: If names are missing or a column the model needs is absent.
        """
        if not features_names:
            raise ValueError(f"requests must name their columns; the model needs {self._bundle.preprocessor.input_names}")
        rows = np.asarray(X, dtype=object)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        columns = {name: rows[:, i] for i, name in enumerate(features_names)}
        missing = [c for c in self._bundle.preprocessor.input_names if c not in columns]
        if missing:
            raise ValueError(f"request is missing columns {missing}")
        return self._bundle.predict_proba(columns).reshape(-1, 1)

    def tags(self):
        """Returned in every response's ``meta.tags``: which model answered."""
        return {"model_name": self._name, "model_version": self._version}

"""The MLflow pyfunc wrapper of a model bundle (imported only where mlflow is loaded)."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from platform_assets.train.network import load_bundle
from platform_assets.train.registry import BUNDLE_ARTIFACT


class LoanDefaultPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a bundle through MLflow: weights from safetensors, nothing unpickled."""

    def load_context(self, context) -> None:  # noqa: D102
        self._bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: D102
        return self._bundle.predict_proba(model_input)

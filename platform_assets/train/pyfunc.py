"""The MLflow pyfunc wrapper of a model bundle, logged as code ("models from code").

MLflow logs this file itself rather than a pickled object, so loading the
model with ``mlflow.pyfunc.load_model`` unpickles nothing: the code is this
file (and the modules MLflow infers from its imports) and the weights are
read from safetensors.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

from platform_assets.train.network import load_bundle
from platform_assets.train.registry import BUNDLE_ARTIFACT


class LoanDefaultPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a bundle through MLflow: weights from safetensors, nothing unpickled."""

    def load_context(self, context) -> None:  # noqa: D102
        self._bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: D102
        return self._bundle.predict_proba(model_input)


set_model(LoanDefaultPyfunc())

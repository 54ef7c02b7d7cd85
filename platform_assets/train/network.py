"""The tabular network and its bundle: weights, preprocessing and metadata.

This module needs only numpy, torch and safetensors (no Dagster, no MLflow), so
the serving environment imports it as it is. A bundle is a directory with
``model.safetensors`` (the weights, loaded without unpickling anything) and
``bundle.json`` (architecture, preprocessing fitted on the training split,
feature order and metadata such as the model version).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

WEIGHTS_FILE = "model.safetensors"
BUNDLE_FILE = "bundle.json"


@dataclass
class Preprocessor:
    """Standardisation of numeric columns and one-hot encoding of categorical ones.

    Fitted on the training split only; unknown categories map to all zeros.
    """

    numeric: list[str]
    categorical: list[str]
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, columns: Mapping[str, Sequence[Any]]) -> "Preprocessor":
        """Learns means, standard deviations and category levels from ``columns``."""
        self.means, self.stds = [], []
        for name in self.numeric:
            values = np.asarray(columns[name], dtype=np.float64)
            self.means.append(float(np.mean(values)))
            std = float(np.std(values))
            self.stds.append(std if std > 0 else 1.0)
        self.categories = {
            name: sorted({str(v) for v in columns[name]}) for name in self.categorical
        }
        return self

    @property
    def input_names(self) -> list[str]:
        """The raw input columns the model needs, numeric first."""
        return [*self.numeric, *self.categorical]

    @property
    def output_dim(self) -> int:
        """Width of the encoded matrix."""
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    def transform(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Encodes ``columns`` into a float32 matrix, one row per input row.

        Raises:
            KeyError: If a required column is missing (names the column).
        """
        missing = [c for c in self.input_names if c not in columns]
        if missing:
            raise KeyError(f"input is missing columns {missing}; the model needs {self.input_names}")
        parts = []
        if self.numeric:
            numeric = np.column_stack(
                [np.asarray(columns[c], dtype=np.float64) for c in self.numeric]
            )
            parts.append((numeric - np.asarray(self.means)) / np.asarray(self.stds))
        for name in self.categorical:
            levels = self.categories[name]
            values = np.asarray([str(v) for v in columns[name]], dtype=object)
            parts.append(np.column_stack([values == level for level in levels]).astype(np.float64))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def transform_one(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """:meth:`transform` of columns holding one row: the same float32 matrix (float64 arithmetic,
        then one cast), built without stacking columns: the model server's path for one-row requests.

        Raises:
            KeyError: If a required column is missing (names the column).
        """
        missing = [c for c in self.input_names if c not in columns]
        if missing:
            raise KeyError(f"input is missing columns {missing}; the model needs {self.input_names}")
        row = [(float(columns[c][0]) - mean) / std for c, mean, std in zip(self.numeric, self.means, self.stds)]
        for name in self.categorical:
            value = str(columns[name][0])
            row += [1.0 if value == level else 0.0 for level in self.categories[name]]
        return np.array([row], dtype=np.float64).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form, stored in ``bundle.json``."""
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "means": self.means,
            "stds": self.stds,
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessor":
        """Inverse of :meth:`to_dict`."""
        return cls(
            numeric=list(data["numeric"]),
            categorical=list(data["categorical"]),
            means=list(data["means"]),
            stds=list(data["stds"]),
            categories={k: list(v) for k, v in data["categories"].items()},
        )


class TabularNet(nn.Module):
    """A multilayer perceptron that outputs one logit (probability of default)."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x).squeeze(-1)


@dataclass
class ModelBundle:
    """A trained network with its preprocessing: predicts from raw feature columns."""

    net: TabularNet
    preprocessor: Preprocessor
    architecture: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Returns the probability of the positive label (1) for each input row (float64)."""
        return self.predict_encoded(self.preprocessor.transform(columns))

    def predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """The probabilities of rows already encoded by :attr:`preprocessor` (float32 matrix), as float64."""
        if self.net.training:  # dropout off; checked first: eval() walks every module on each call
            self.net.eval()
        with torch.inference_mode():
            return torch.sigmoid(self.net(torch.from_numpy(encoded))).double().numpy()

    def save(self, directory: Path) -> str:
        """Writes the bundle into ``directory``; returns the sha256 of the weights file."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        payload = {
            "architecture": self.architecture,
            "preprocessor": self.preprocessor.to_dict(),
            "metadata": self.metadata,
        }
        (directory / BUNDLE_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        return weights_sha256(self.net)


def weights_sha256(net: nn.Module) -> str:
    """Hash of the network's parameters (names, shapes and exact bytes), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_bundle(directory: str | Path) -> ModelBundle:
    """Loads a bundle written by :meth:`ModelBundle.save` (no unpickling).

    Raises:
        FileNotFoundError: If the directory lacks the weights or ``bundle.json``.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (WEIGHTS_FILE, BUNDLE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"model bundle {directory} has no {name}")
    payload = json.loads((directory / BUNDLE_FILE).read_text())
    preprocessor = Preprocessor.from_dict(payload["preprocessor"])
    arch = payload["architecture"]
    net = TabularNet(preprocessor.output_dim, hidden=arch["hidden"], dropout=arch["dropout"])
    net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    net.eval()
    return ModelBundle(net, preprocessor, arch, payload.get("metadata", {}))

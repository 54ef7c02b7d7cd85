"""ROC and calibration plots of the evaluated models, written as PNG files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Mapping

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5, 4.5), dpi=100)


def roc_plot(scores: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """ROC curves of each model on the test split.

    Args:
        scores: Model label (e.g. ``challenger v3``) -> (labels, probabilities).
        path: The PNG file to write.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    plt, fig, ax = _figure()
    for label, (y, p) in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test split")
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def calibration_plot(tables: Mapping[str, list[dict]], path: Path) -> Path:
    """Reliability diagram: mean predicted probability against observed default rate per bin.

    Args:
        tables: Model label -> calibration table from :func:`metrics.calibration_table`.
        path: The PNG file to write.
    """
    plt, fig, ax = _figure()
    for label, table in tables.items():
        ax.plot([r["mean_predicted"] for r in table], [r["observed_rate"] for r in table], marker="o", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed default rate", title="Calibration on the test split",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def data_uri(path: Path) -> str:
    """The PNG as a ``data:`` URI, so Markdown metadata shows it inline in the Dagster UI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")

"""Metrics, fairness slices and the gate decision, as plain functions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def score(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Classification metrics of probabilities ``p`` against labels ``y``."""
    from sklearn import metrics as skm  # imported here: sklearn costs ~1 s at code-location load

    predicted = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if both_classes else float("nan"),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "brier": float(skm.brier_score_loss(y, p)),
        "rows": int(len(y)),
    }


def fairness(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float = 0.5) -> dict:
    """Per-group metrics and the largest gaps between groups.

    Returns:
        ``slices`` (group -> metrics, positive rate, true positive rate),
        ``demographic_parity_difference`` (largest gap in predicted positive
        rate) and ``equal_opportunity_difference`` (largest gap in true
        positive rate among groups that have positives).
    """
    predicted = p >= threshold
    slices, positive_rates, tprs = {}, [], []
    for group in sorted(pd.unique(groups)):
        mask = groups == group
        rate = float(predicted[mask].mean())
        positives = mask & (y == 1)
        tpr = float(predicted[positives].mean()) if positives.any() else float("nan")
        slices[str(group)] = {**score(y[mask], p[mask], threshold), "positive_rate": rate, "true_positive_rate": tpr}
        positive_rates.append(rate)
        if not np.isnan(tpr):
            tprs.append(tpr)
    return {
        "slices": slices,
        "demographic_parity_difference": float(max(positive_rates) - min(positive_rates)),
        "equal_opportunity_difference": float(max(tprs) - min(tprs)) if tprs else 0.0,
    }


@dataclass
class GateDecision:
    """Whether the challenger may replace the champion, and why."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def decide(
    challenger: dict,
    champion: dict | None,
    *,
    min_roc_auc: float,
    tolerance: float,
    max_demographic_parity_difference: float,
    max_equal_opportunity_difference: float,
) -> GateDecision:
    """The gate: absolute bounds for a first model, no regression against a champion, fairness bounds.

    Args:
        challenger: ``{"metrics": ..., "fairness": ...}`` of the new model.
        champion: The same for the current champion, or ``None`` for the first model.
        min_roc_auc: The floor every model must reach.
        tolerance: How much worse than the champion's ROC AUC the challenger may be.
        max_demographic_parity_difference: Fairness bound.
        max_equal_opportunity_difference: Fairness bound.

    Returns:
        The decision with one reason per rule, passed or failed.
    """
    reasons, passed = [], True
    auc = challenger["metrics"]["roc_auc"]
    ok = auc >= min_roc_auc
    passed &= ok
    reasons.append(f"{'PASS' if ok else 'FAIL'}: ROC AUC {auc:.4f} {'>=' if ok else '<'} floor {min_roc_auc}")
    if champion is None:
        reasons.append("PASS: no champion yet; judged on absolute bounds")
    else:
        best = champion["metrics"]["roc_auc"]
        ok = auc >= best - tolerance
        passed &= ok
        reasons.append(
            f"{'PASS' if ok else 'FAIL'}: ROC AUC {auc:.4f} vs champion {best:.4f} (tolerance {tolerance})"
        )
    for name, bound in (
        ("demographic_parity_difference", max_demographic_parity_difference),
        ("equal_opportunity_difference", max_equal_opportunity_difference),
    ):
        value = challenger["fairness"][name]
        ok = value <= bound
        passed &= ok
        reasons.append(f"{'PASS' if ok else 'FAIL'}: {name} {value:.4f} {'<=' if ok else '>'} {bound}")
    return GateDecision(bool(passed), reasons)

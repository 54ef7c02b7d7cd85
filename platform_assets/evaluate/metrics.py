"""Metrics, fairness slices and the gate decision, as plain functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from platform_assets.declarations import UseCase


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


def fairness(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float = 0.5,
             min_group_rows: int = 1, min_group_positives: int = 1) -> dict:
    """Per-group metrics and the largest gaps between groups large enough to judge.

    A rate measured on a handful of rows is noise (a true positive rate from 5
    positives moves in steps of 0.2), so gaps are taken over the groups with at
    least ``min_group_rows`` rows (positive rate) and ``min_group_positives``
    positives (true positive rate); every group is still reported.

    Returns:
        ``slices`` (group -> metrics, positive rate, true positive rate),
        ``demographic_parity_difference`` (largest gap in predicted positive
        rate), ``equal_opportunity_difference`` (largest gap in true positive
        rate), and ``too_small`` (groups left out of a gap, with their counts). A gap over fewer than two
        groups large enough is ``None``: not judged, never a gap of 0.
    """
    predicted = p >= threshold
    slices, positive_rates, tprs, too_small = {}, [], [], {}
    for group in sorted(pd.unique(groups)):
        mask = groups == group
        rate = float(predicted[mask].mean())
        positives = mask & (y == 1)
        tpr = float(predicted[positives].mean()) if positives.any() else float("nan")
        slices[str(group)] = {**score(y[mask], p[mask], threshold), "positive_rate": rate, "true_positive_rate": tpr}
        if mask.sum() >= min_group_rows:
            positive_rates.append(rate)
        if positives.sum() >= min_group_positives and not np.isnan(tpr):
            tprs.append(tpr)
        if mask.sum() < min_group_rows or positives.sum() < min_group_positives:
            too_small[str(group)] = {"rows": int(mask.sum()), "positives": int(positives.sum())}
    return {
        "slices": slices,
        "demographic_parity_difference": _gap(positive_rates),
        "equal_opportunity_difference": _gap(tprs),
        "groups_judged": {"positive_rate": len(positive_rates), "true_positive_rate": len(tprs)},
        "too_small": too_small,
    }


# The fairness of a use case that declares no protected attribute: no slice, no gap judged.
NO_PROTECTED_ATTRIBUTE = {"slices": {}, "demographic_parity_difference": None, "equal_opportunity_difference": None,
                          "groups_judged": {"positive_rate": 0, "true_positive_rate": 0}, "too_small": {},
                          "protected_attribute": None}


def _gap(rates: list[float]) -> float | None:
    return float(max(rates) - min(rates)) if len(rates) >= 2 else None


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability of the probabilities: scikit-learn's ``calibration_curve`` on equal-width bins, with counts.

    Returns:
        One dict per non-empty bin: ``bin_lower``, ``bin_upper``, ``mean_predicted``,
        ``observed_rate`` (scikit-learn's ``prob_pred`` and ``prob_true``) and ``count``.
    """
    from sklearn.calibration import calibration_curve

    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # The rows per bin, binned as calibration_curve bins them (it returns only the non-empty bins' rates).
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    filled = np.flatnonzero(counts)
    return [
        {"bin_lower": float(edges[b]), "bin_upper": float(edges[b + 1]), "mean_predicted": float(mean),
         "observed_rate": float(rate), "count": int(counts[b])}
        for b, mean, rate in zip(filled, predicted, observed, strict=True)
    ]


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    features: Sequence[str],
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Drop in ROC AUC when each feature's column is shuffled, averaged over ``repeats``.

    Works on raw columns (numeric or categorical), since ``predict`` encodes them itself.

    Args:
        predict: Probabilities for a DataFrame of raw feature columns.
        frame: The evaluation rows.
        y: Their 0/1 labels.
        features: Columns to permute, one at a time.
        repeats: Shuffles per feature.
        seed: Seed of the shuffles (same seed, same importances).

    Returns:
        One dict per feature (``feature``, ``auc_drop_mean``, ``auc_drop_std``), largest drop first.
    """
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    baseline = float(roc_auc_score(y, predict(frame)))
    rows = []
    for feature in features:
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[feature] = frame[feature].to_numpy()[rng.permutation(len(frame))]
            drops.append(baseline - float(roc_auc_score(y, predict(shuffled))))
        rows.append({"feature": feature, "auc_drop_mean": float(np.mean(drops)), "auc_drop_std": float(np.std(drops))})
    return sorted(rows, key=lambda r: -r["auc_drop_mean"])


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
    brier_tolerance: float = 0.01,
) -> GateDecision:
    """The gate: absolute bounds for a first model, no regression against a champion, fairness bounds.

    Args:
        challenger: ``{"metrics": ..., "fairness": ...}`` of the new model.
        champion: The same for the current champion, or ``None`` for the first model.
        min_roc_auc: The floor every model must reach.
        tolerance: How much worse than the champion's ROC AUC the challenger may be.
        brier_tolerance: How much worse than the champion's Brier score (calibration) it may be.
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
        brier, champion_brier = challenger["metrics"]["brier"], champion["metrics"]["brier"]
        ok = brier <= champion_brier + brier_tolerance
        passed &= ok
        reasons.append(
            f"{'PASS' if ok else 'FAIL'}: Brier score {brier:.4f} vs champion {champion_brier:.4f} "
            f"(tolerance {brier_tolerance})"
        )
    for name, bound in (
        ("demographic_parity_difference", max_demographic_parity_difference),
        ("equal_opportunity_difference", max_equal_opportunity_difference),
    ):
        value = challenger["fairness"][name]
        judged = (challenger["fairness"].get("groups_judged") or {}).get(
            "positive_rate" if "parity" in name else "true_positive_rate", 2)
        if "protected_attribute" in challenger["fairness"] and challenger["fairness"]["protected_attribute"] is None:
            reasons.append(f"NOT JUDGED: {name}: the use case declares no protected attribute")
            continue
        if judged < 2 or value is None:
            # Not a pass by default: said as it is, so that the report shows fairness was not measured.
            reasons.append(f"NOT JUDGED: {name}: fewer than two groups large enough in the test split")
            continue
        ok = value <= bound
        passed &= ok
        reasons.append(f"{'PASS' if ok else 'FAIL'}: {name} {value:.4f} {'<=' if ok else '>'} {bound}")
    small = challenger["fairness"].get("too_small") or {}
    if small:
        reasons.append("NOTE: groups too small for some fairness gaps (left out of them): "
                       + ", ".join(f"{g} ({c['rows']} rows, {c['positives']} positives)" for g, c in small.items()))
    return GateDecision(bool(passed), reasons)


def score_model(bundle, test, config, importance: bool, use_case: UseCase) -> tuple[dict, np.ndarray]:
    """Metrics, fairness slices, calibration and (optionally) permutation importance of one model.

    Args:
        config: The evaluation settings (``threshold``, ``min_group_rows``, ``min_group_positives``,
            ``calibration_bins``, ``importance_repeats``, ``importance_seed``: an ``EvaluationConfig``).

    Returns:
        The scores and the model's probabilities on ``test``.
    """
    y = test[use_case.label].to_numpy()
    p = bundle.predict_proba(test)
    scored = {
        "metrics": score(y, p, config.threshold),
        "fairness": (fairness(y, p, test[use_case.protected_attribute].to_numpy(), config.threshold,
                              config.min_group_rows, config.min_group_positives)
                     if use_case.protected_attribute else NO_PROTECTED_ATTRIBUTE),
        "calibration": calibration_table(y, p, config.calibration_bins),
    }
    if importance:
        scored["permutation_importance"] = permutation_importance(
            bundle.predict_proba, test, y, bundle.preprocessor.input_names,
            repeats=config.importance_repeats, seed=config.importance_seed,
        )
    return scored, p


def stale_reasons(evaluation: dict, challenger_now: str | None, champion_now: str | None) -> list[str]:
    """Why an evaluation no longer describes the registry (the versions it compared were re-aliased since)."""
    reasons = []
    if evaluation["challenger_version"] != challenger_now:
        reasons.append(f"FAIL: the evaluation scored version {evaluation['challenger_version']}, "
                       f"the challenger is now {challenger_now or 'unset'}")
    if evaluation["champion_version"] != champion_now:
        reasons.append(f"FAIL: the evaluation compared with champion {evaluation['champion_version'] or 'none'}, "
                       f"the champion is now {champion_now or 'none'}")
    return reasons


def log_loss(y, p) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for labels ``y`` (scikit-learn's)."""
    from sklearn.metrics import log_loss as sklearn_log_loss

    return float(sklearn_log_loss(y, p, labels=[0, 1]))

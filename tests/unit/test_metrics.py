"""Evaluation metrics, fairness gaps and the gate's rules."""

import numpy as np
import pytest

from platform_assets.evaluate.metrics import decide, fairness, score

BOUNDS = dict(min_roc_auc=0.75, tolerance=0.01, max_demographic_parity_difference=0.2,
              max_equal_opportunity_difference=0.2)


def _model(auc, dp=0.05, eo=0.05):
    return {"metrics": {"roc_auc": auc}, "fairness": {"demographic_parity_difference": dp,
                                                      "equal_opportunity_difference": eo}}


def test_score_on_a_perfect_ranking():
    y = np.array([0, 0, 1, 1])
    m = score(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["brier"] == pytest.approx(0.025)


def test_fairness_gaps():
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.9, 0.1, 0.2, 0.1])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    f = fairness(y, p, g)
    # Group a: 3/3 predicted positive; group b: 0/3.
    assert f["demographic_parity_difference"] == pytest.approx(1.0)
    assert f["equal_opportunity_difference"] == pytest.approx(1.0)


def test_first_model_is_judged_on_absolute_bounds():
    assert decide(_model(0.8), None, **BOUNDS).passed
    assert not decide(_model(0.7), None, **BOUNDS).passed


def test_regression_against_champion_fails_and_says_why():
    decision = decide(_model(0.80), _model(0.85), **BOUNDS)
    assert not decision.passed
    assert any(r.startswith("FAIL") and "champion" in r for r in decision.reasons)
    assert decide(_model(0.845), _model(0.85), **BOUNDS).passed


def test_unfair_but_accurate_model_fails():
    decision = decide(_model(0.95, dp=0.4), _model(0.85), **BOUNDS)
    assert not decision.passed
    assert any("demographic_parity" in r and r.startswith("FAIL") for r in decision.reasons)

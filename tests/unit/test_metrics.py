"""Evaluation metrics, fairness gaps and the gate's rules."""

import numpy as np
import pytest

from platform_assets.evaluate.metrics import calibration_table, decide, fairness, permutation_importance, score

BOUNDS = dict(min_roc_auc=0.75, tolerance=0.01, max_demographic_parity_difference=0.2,
              max_equal_opportunity_difference=0.2)


def _model(auc, dp=0.05, eo=0.05, brier=0.1):
    return {"metrics": {"roc_auc": auc, "brier": brier}, "fairness": {"demographic_parity_difference": dp,
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


def test_fairness_gaps_leave_out_groups_too_small_to_judge():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 430)
    g = np.array(["a"] * 200 + ["b"] * 200 + ["tiny"] * 30)
    p = np.where(y == 1, 0.7, 0.3)
    p[400:] = 0.9  # the tiny group: everyone predicted positive
    f = fairness(y, p, g, min_group_rows=100, min_group_positives=30)
    assert f["demographic_parity_difference"] < 0.15 and f["equal_opportunity_difference"] == 0.0
    assert f["too_small"] == {"tiny": {"rows": 30, "positives": int(y[400:].sum())}}
    assert f["slices"]["tiny"]["positive_rate"] == 1.0  # still reported
    judged = fairness(y, p, g)  # every group judged: the tiny group's gap shows
    assert judged["demographic_parity_difference"] > 0.4
    decision = decide(_model(0.8) | {"fairness": f}, None, **BOUNDS)
    assert decision.passed and any(r.startswith("NOTE") and "tiny (30 rows" in r for r in decision.reasons)
    alone = fairness(y[:200], p[:200], g[:200], min_group_rows=100, min_group_positives=30)  # one group: no gap
    reasons = decide(_model(0.8) | {"fairness": alone}, None, **BOUNDS).reasons
    assert sum(r.startswith("NOT JUDGED") for r in reasons) == 2 and not any("PASS: demographic" in r for r in reasons)
    # Not judged is no gap of 0, wherever the figure appears: the report's table says so.
    assert alone["demographic_parity_difference"] is None and alone["equal_opportunity_difference"] is None
    from platform_assets.evaluate.report import _gaps

    assert set(_gaps({"fairness": alone}).values()) == {"not judged"}
    assert _gaps({"fairness": f})["demographic_parity_difference"] == f["demographic_parity_difference"]


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


def test_worse_calibration_than_champion_fails_and_every_rule_gives_a_reason():
    decision = decide(_model(0.85, brier=0.13), _model(0.85, brier=0.10), **BOUNDS)
    assert not decision.passed
    assert [r.split(":")[0] for r in decision.reasons] == ["PASS", "PASS", "FAIL", "PASS", "PASS"]
    assert "Brier" in decision.reasons[2]
    assert decide(_model(0.85, brier=0.105), _model(0.85, brier=0.10), **BOUNDS).passed


def test_calibration_table_bins_predictions_and_observed_rates():
    p = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1, 0])
    table = calibration_table(y, p, bins=10)
    assert [(r["bin_lower"], r["count"]) for r in table] == [(0.0, 2), (0.1, 1), (0.9, 3)]
    assert table[0]["observed_rate"] == 0.5 and table[2]["mean_predicted"] == pytest.approx(0.9667, abs=1e-4)
    assert sum(r["count"] for r in table) == len(p)


def test_calibration_table_is_scikit_learns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=2000), np.linspace(0, 1, 11)])  # edges included: binned as sklearn bins them
    y = (rng.uniform(size=len(p)) < p).astype(int)
    table = calibration_table(y, p, bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_array_equal([r["observed_rate"] for r in table], observed)
    np.testing.assert_array_equal([r["mean_predicted"] for r in table], predicted)
    assert sum(r["count"] for r in table) == len(p)
    # Counts agree with the rates: observed positives per bin are whole numbers.
    assert all(abs(r["observed_rate"] * r["count"] - round(r["observed_rate"] * r["count"])) < 1e-9 for r in table)


def test_permutation_importance_finds_the_feature_the_model_uses():
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"signal": rng.normal(size=2000), "noise": rng.normal(size=2000)})
    y = (frame["signal"] + 0.3 * rng.normal(size=2000) > 0).astype(int).to_numpy()

    def predict(df):
        return 1 / (1 + np.exp(-3 * df["signal"].to_numpy()))

    importance = permutation_importance(predict, frame, y, ["noise", "signal"], repeats=3, seed=1)
    assert [r["feature"] for r in importance] == ["signal", "noise"]
    assert importance[0]["auc_drop_mean"] > 0.3 and importance[1]["auc_drop_mean"] == 0.0
    assert permutation_importance(predict, frame, y, ["noise", "signal"], repeats=3, seed=1) == importance


def test_without_a_protected_attribute_fairness_is_not_judged_and_says_why():
    from platform_assets.evaluate.metrics import NO_PROTECTED_ATTRIBUTE

    decision = decide(_model(0.8) | {"fairness": NO_PROTECTED_ATTRIBUTE}, None, **BOUNDS)
    assert decision.passed
    assert [r for r in decision.reasons if r.startswith("NOT JUDGED")] == [
        "NOT JUDGED: demographic_parity_difference: the use case declares no protected attribute",
        "NOT JUDGED: equal_opportunity_difference: the use case declares no protected attribute"]

"""The fairness bounds of the gate, on a planted biased dataset and two really trained models."""

import numpy as np
import pytest

from platform_assets.defs.evaluate.assets import EvaluationConfig
from platform_assets.defs.evaluate.checks import GateConfig, gate_bounds
from platform_assets.evaluate.metrics import decide, fairness, score
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from platform_assets.train.trainer import TrainParams, train_model

# No age proxy among them: credit and employment history grow with age and are left out.
NEUTRAL = ["income", "loan_amount", "term_months", "num_open_accounts", "num_delinquencies", "debt_to_income", "region"]


@pytest.fixture(scope="module")
def biased_models():
    """Defaults planted on the youngest applicants; one model sees their age band, the other does not."""
    df = generate_applications(GeneratorConfig(days=20, rows_per_day=400, dirty_fraction=0, seed=3))
    rng = np.random.default_rng(5)
    young = (df["age_band"] == "18-25").to_numpy()
    df.loc[young & (rng.uniform(size=len(df)) < 0.6), "is_default"] = 1
    n = len(df)
    train, val, test = df.iloc[: int(0.7 * n)], df.iloc[int(0.7 * n) : int(0.85 * n)], df.iloc[int(0.85 * n) :]
    params = TrainParams(max_epochs=15)
    config = EvaluationConfig()
    y, groups = test["is_default"].to_numpy(), test["age_band"].to_numpy()
    scored = {}
    for name, features in (("fair", NEUTRAL), ("uses_age", [*NEUTRAL, "age_band"])):
        p = train_model(train, val, features, "is_default", params).bundle.predict_proba(test)
        scored[name] = {"metrics": score(y, p, config.threshold), "fairness": fairness(y, p, groups, config.threshold)}
    return scored, GateConfig()


def test_fairness_bound_rejects_a_more_accurate_but_unfair_model(biased_models):
    scored, config = biased_models
    fair, unfair = scored["fair"], scored["uses_age"]
    assert unfair["metrics"]["roc_auc"] > fair["metrics"]["roc_auc"] + 0.02
    assert unfair["metrics"]["accuracy"] > fair["metrics"]["accuracy"]
    decision = decide(unfair, fair, **gate_bounds(config))
    assert not decision.passed
    failed = [r for r in decision.reasons if r.startswith("FAIL")]
    assert failed and all("parity" in r or "opportunity" in r for r in failed)
    assert any(r.startswith("PASS") and "vs champion" in r for r in decision.reasons)
    assert any(r.startswith("FAIL: demographic_parity_difference") for r in failed)
    # The model blind to age predicts defaults at similar rates across age bands. (Its true positive
    # rates still differ: the planted defaults of the young cannot be predicted without their age.)
    assert fair["fairness"]["demographic_parity_difference"] <= config.max_demographic_parity_difference
    assert unfair["fairness"]["demographic_parity_difference"] > 2 * config.max_demographic_parity_difference


def _two_groups(rate_a: float, rate_b: float, tpr_b: float = 1.0, n: int = 400):
    """Groups of ``n`` rows whose predicted positive rates are ``rate_a`` and ``rate_b``.

    Every predicted positive is a real positive; in group b ``1 - tpr_b`` of its positives are missed
    (predicted negative), so its true positive rate is ``tpr_b`` (group a's is 1).
    """
    y, p, groups = [], [], []
    for group, rate, tpr in (("a", rate_a, 1.0), ("b", rate_b, tpr_b)):
        hits = round(rate * n)
        positives = round(hits / tpr)
        y += [1] * positives + [0] * (n - positives)
        p += [0.9] * hits + [0.1] * (positives - hits) + [0.1] * (n - positives)
        groups += [group] * n
    return np.array(y), np.array(p), np.array(groups)


@pytest.mark.parametrize(
    "rate_b, tpr_b, passed, rule",
    [
        pytest.param(0.12, 1.0, True, "demographic_parity_difference 0.2800", id="parity-0.28-passes"),
        pytest.param(0.08, 1.0, False, "demographic_parity_difference 0.3200", id="parity-0.32-fails"),
        pytest.param(0.36, 0.72, True, "equal_opportunity_difference 0.2800", id="opportunity-0.28-passes"),
        pytest.param(0.34, 0.68, False, "equal_opportunity_difference 0.3200", id="opportunity-0.32-fails"),
    ],
)
def test_fairness_bounds_judge_gaps_just_inside_and_just_outside(rate_b, tpr_b, passed, rule):
    """The default bounds (0.3) hold at a gap of 0.28 and reject one of 0.32, on groups large enough to judge."""
    config, bounds = EvaluationConfig(), GateConfig()
    y, p, groups = _two_groups(0.40, rate_b, tpr_b)
    challenger = {"metrics": score(y, p, config.threshold),
                  "fairness": fairness(y, p, groups, config.threshold, config.min_group_rows, config.min_group_positives)}
    assert challenger["fairness"]["groups_judged"] == {"positive_rate": 2, "true_positive_rate": 2}
    decision = decide(challenger, None, **gate_bounds(bounds))
    assert decision.passed is passed, decision.reasons
    assert any(r.startswith("PASS" if passed else "FAIL") and rule in r for r in decision.reasons), decision.reasons

"""Promotion on live quality: both versions scored on the same labelled requests; the decision can go either way."""

import json

import numpy as np
import pandas as pd
import pytest

from platform_assets.deploy import live_quality

KEY, LABEL = "application_id", "is_default"


def _traffic(n: int = 400, seed: int = 0):
    """Labels, and a good and a poor model's answers to the same n requests."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.15, n), 0.01, 0.99)
    poor = np.clip(0.5 + (y - 0.5) * 0.1 + rng.normal(0, 0.25, n), 0.01, 0.99)
    ids = [f"a{i}" for i in range(n)]
    labels = pd.DataFrame({KEY: ids, LABEL: y})

    def answers(p, version):
        return pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "row": 0, KEY: pd.array(ids, dtype="string"),
                             "model_version": version, "probability": p})

    return labels, answers(good, "1"), answers(poor, "2"), answers(good, "2")


def test_a_challenger_worse_live_is_kept_out_and_the_reason_names_the_metric():
    labels, stable, poor, _ = _traffic()
    comparison = live_quality.compare(stable, poor, labels, KEY, LABEL, "1", "2")
    assert comparison.labelled == 400 and comparison.stable_auc > comparison.challenger_auc + 0.1
    promote, reason = live_quality.decide(comparison, min_labelled=200, max_auc_drop=0.0, max_brier_rise=0.0)
    assert not promote and "ROC AUC" in reason and "worse live" in reason


def test_a_challenger_not_worse_is_promoted_and_a_better_stable_version_would_not_be():
    labels, poor_stable, _, good = _traffic()
    poor_stable = poor_stable.assign(probability=_traffic()[2]["probability"])
    promote, reason = live_quality.decide(live_quality.compare(poor_stable, good, labels, KEY, LABEL, "1", "2"),
                                          200, 0.0, 0.0)
    assert promote, reason
    assert not live_quality.decide(live_quality.compare(good, poor_stable, labels, KEY, LABEL, "2", "1"),
                                   200, 0.0, 0.0)[0]


def test_too_few_labelled_requests_or_one_outcome_decide_nothing():
    labels, stable, _, good = _traffic()
    few = live_quality.compare(stable, good, labels.head(50), KEY, LABEL, "1", "2")
    assert few.labelled == 50
    promote, reason = live_quality.decide(few, 200, 0.0, 0.0)
    assert not promote and "only 50 labelled" in reason
    one_class = labels.assign(**{LABEL: 1})
    promote, reason = live_quality.decide(live_quality.compare(stable, good, one_class, KEY, LABEL, "1", "2"),
                                          10, 0.0, 0.0)
    assert not promote and "single outcome" in reason


def test_shadow_answers_count_only_where_both_versions_answered_the_same_request():
    labels, stable, _, good = _traffic()
    comparison = live_quality.compare(stable.iloc[:300], good.iloc[100:], labels, KEY, LABEL, "1", "2")
    assert comparison.both_answered == 200 and comparison.labelled == 200


def test_a_canary_is_scored_on_its_own_share_of_requests():
    labels, stable, _, good = _traffic()
    comparison = live_quality.compare(stable.iloc[:300], good.iloc[300:], labels, KEY, LABEL, "1", "2", paired=False)
    assert comparison.labelled == 100  # the smaller of the two shares
    assert comparison.challenger_auc is not None and comparison.stable_auc is not None


def test_logged_answers_read_every_day_and_count_a_torn_line(tmp_path):
    line = {"request_id": "r1", "row": 0, "served_at": "2026-12-01T10:00:00+00:00", "event_ts": "2026-12-01T09:00:00",
            "model_name": "m", "model_version": "2", "feature_source": "online", "role": "shadow",
            "application_id": "a1", "applicant_id": 7, "probability": 0.25, "latency_ms": 1.0}
    ids = {"application_id": "str", "applicant_id": "int"}
    for day, version in (("2026-11-30", "2"), ("2026-12-01", "2"), ("2026-12-01", "3")):
        folder = tmp_path / f"day={day}"
        folder.mkdir(exist_ok=True)
        with (folder / f"h-1-{version}.jsonl").open("a") as f:
            f.write(json.dumps({**line, "event_ts": f"{day}T09:00:00", "model_version": version}) + "\n")
    (tmp_path / "day=2026-12-01" / "h-1-2.jsonl").open("a").write('{"request_id": "torn')
    answers = live_quality.logged_answers(tmp_path, ids, "application_id", {"2"})
    assert len(answers.rows) == 2 and answers.lines == 4 and answers.rejected == 1
    assert set(answers.rows["model_version"]) == {"2"}
    assert len(live_quality.logged_answers(tmp_path, ids, "application_id", role="canary").rows) == 0


@pytest.mark.parametrize("missing", ["stable", "challenger"])
def test_no_answers_at_all_is_not_enough_labels(missing):
    labels, stable, _, good = _traffic()
    frames = {"stable": stable, "challenger": good}
    frames[missing] = frames[missing].iloc[0:0]
    comparison = live_quality.compare(frames["stable"], frames["challenger"], labels, KEY, LABEL, "1", "2")
    assert comparison.labelled == 0 and not live_quality.decide(comparison, 1, 0.0, 0.0)[0]

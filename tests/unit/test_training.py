"""Training: reproducible weights, a model that learns, bundles that load without pickle."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from platform_assets.train.network import load_bundle
from platform_assets.train.trainer import TrainParams, train_model

FEATURES = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years",
            "num_delinquencies", "debt_to_income", "region"]


@pytest.fixture(scope="module")
def splits():
    df = generate_applications(GeneratorConfig(days=10, rows_per_day=600, dirty_fraction=0))
    n = len(df)
    return df.iloc[: int(0.7 * n)], df.iloc[int(0.7 * n) : int(0.85 * n)], df.iloc[int(0.85 * n) :]


def test_same_inputs_and_seed_give_the_same_weights(splits):
    train, val, _ = splits
    params = TrainParams(max_epochs=5)
    a = train_model(train, val, FEATURES, "is_default", params)
    b = train_model(train, val, FEATURES, "is_default", params)
    c = train_model(train, val, FEATURES, "is_default", TrainParams(max_epochs=5, seed=8))
    assert a.weights_sha256 == b.weights_sha256
    assert a.weights_sha256 != c.weights_sha256


def test_model_learns_and_bundle_round_trips(splits, tmp_path):
    train, val, test = splits
    result = train_model(train, val, FEATURES, "is_default", TrainParams(max_epochs=20))
    p = result.bundle.predict_proba(test)
    assert roc_auc_score(test["is_default"], p) > 0.75
    assert result.history[result.best_epoch - 1]["val_loss"] < result.history[0]["val_loss"]
    assert result.bundle.save(tmp_path / "b") == result.weights_sha256
    loaded = load_bundle(tmp_path / "b")
    np.testing.assert_allclose(loaded.predict_proba(test), p, atol=1e-7)


def test_missing_input_column_is_named(splits, tmp_path):
    train, val, test = splits
    result = train_model(train, val, FEATURES, "is_default", TrainParams(max_epochs=1))
    with pytest.raises(KeyError, match="debt_to_income"):
        result.bundle.predict_proba(test.drop(columns=["debt_to_income"]))


def test_search_picks_the_lowest_validation_loss_and_candidates_do_not_depend_on_order(splits):
    from platform_assets.train.trainer import search

    train, val, _ = splits
    slow = TrainParams(hidden=(8,), learning_rate=1e-4, max_epochs=3)
    fast = TrainParams(hidden=(32,), learning_rate=3e-3, max_epochs=3)
    best, results = search(train, val, FEATURES, "is_default", [slow, fast])
    assert best == 1 and results[1].best_val_loss < results[0].best_val_loss
    assert [r.params for r in results] == [slow, fast]
    best_reversed, reversed_results = search(train, val, FEATURES, "is_default", [fast, slow])
    assert best_reversed == 0
    assert reversed_results[0].weights_sha256 == results[1].weights_sha256
    with pytest.raises(ValueError, match="at least one candidate"):
        search(train, val, FEATURES, "is_default", [])


def test_training_leaves_the_process_thread_count_as_it_was(splits):
    import torch

    train, val, _ = splits
    before = torch.get_num_threads()
    train_model(train.head(500), val.head(100), FEATURES, "is_default", TrainParams(max_epochs=1, num_threads=before + 1))
    assert torch.get_num_threads() == before

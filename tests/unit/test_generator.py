"""The sample-data generator: seeded, sized, labelled with signal, drift scenarios that move data."""

import datetime as dt

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from platform_assets.use_cases.loan_default.vocabulary import COLUMNS
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications, write_landing_files


def test_same_seed_same_data_and_all_columns():
    config = GeneratorConfig(start_date=dt.date(2026, 1, 1), days=5, rows_per_day=200)
    a, b = generate_applications(config), generate_applications(config)
    assert list(a.columns) == list(COLUMNS)
    assert a.equals(b)
    assert 5 * 180 <= len(a) <= 5 * 220
    assert a["application_id"].is_unique


def test_labels_arrive_after_applications_and_carry_signal():
    df = generate_applications(GeneratorConfig(days=10, rows_per_day=1000, dirty_fraction=0))
    delay = (df["label_ts"] - df["application_ts"]).dt.days
    assert delay.between(7, 30).all()
    # A simple score of the known risk drivers already separates the classes.
    score = df["debt_to_income"] + df["num_delinquencies"] * 0.1 + df["loan_amount"] / df["income"]
    assert roc_auc_score(df["is_default"], score) > 0.7
    assert 0.05 < df["is_default"].mean() < 0.4


def test_covariate_drift_moves_inputs_after_the_drift_day():
    config = GeneratorConfig(days=30, rows_per_day=500, scenario="covariate", drift_start_day=20, dirty_fraction=0)
    df = generate_applications(config)
    day = (df["application_ts"] - df["application_ts"].min()).dt.days
    before, after = df[day < 20], df[day >= 20]
    assert after["income"].median() < 0.8 * before["income"].median()
    assert after["debt_to_income"].mean() > before["debt_to_income"].mean() + 0.1


def test_dirty_fraction_breaks_that_many_rows():
    df = generate_applications(GeneratorConfig(days=10, rows_per_day=1000, dirty_fraction=0.01))
    broken = (df["income"] < 0) | (df["region"] == "atlantis") | df["employment_years"].isna() | (
        df["loan_amount"] > 10 * df["income"].abs()
    )
    assert broken.sum() == round(len(df) * 0.01)


def test_one_landing_file_per_day(tmp_path):
    df = generate_applications(GeneratorConfig(start_date=dt.date(2026, 3, 1), days=3, rows_per_day=50))
    paths = write_landing_files(df, tmp_path)
    assert [p.name for p in paths] == [f"applications_2026-03-0{d}.parquet" for d in (1, 2, 3)]
    assert not list(tmp_path.glob(".*"))


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_applications(GeneratorConfig(scenario="meteor"))


def test_a_million_rows_are_generated_vectorised():
    df = generate_applications(GeneratorConfig(days=100, rows_per_day=10_000, dirty_fraction=0))
    assert len(df) > 900_000
    assert np.isfinite(df["income"]).all()


def test_concept_drift_moves_the_relation_and_keeps_it_as_learnable():
    """A model of the old days loses much on the drifted days; a model of the drifted days gets the quality back."""
    from sklearn.linear_model import LogisticRegression

    df = generate_applications(GeneratorConfig(days=40, rows_per_day=600, scenario="concept", drift_start_day=20,
                                               seed=5, dirty_fraction=0))
    day = (df["application_ts"] - df["application_ts"].min()).dt.days
    x = np.column_stack([df["debt_to_income"], df["loan_amount"] / df["income"], df["num_delinquencies"],
                         df["credit_history_years"], df["employment_years"], np.log(df["income"])])
    y = df["is_default"].to_numpy()

    def fit(mask):
        return LogisticRegression(max_iter=1000).fit(x[mask], y[mask])

    pre_fit, pre_test = (day < 14).to_numpy(), ((day >= 14) & (day < 20)).to_numpy()
    post_fit, post_test = ((day >= 20) & (day < 26)).to_numpy(), (day >= 26).to_numpy()
    old, new = fit(pre_fit), fit(post_fit)
    auc = lambda model, mask: roc_auc_score(y[mask], model.predict_proba(x[mask])[:, 1])  # noqa: E731
    before, old_after, new_after = auc(old, pre_test), auc(old, post_test), auc(new, post_test)
    assert old_after < before - 0.1  # the drift is there: the old relation no longer ranks well
    assert new_after > before - 0.02  # and the new one is as learnable: retraining can recover


def test_sample_files_are_written_a_day_at_a_time_and_hold_exactly_the_generated_rows(tmp_path):
    import pandas as pd

    from platform_assets.use_cases.loan_default.generator import generate_days, write_sample

    config = GeneratorConfig(start_date=dt.date(2026, 3, 1), days=4, rows_per_day=300, dirty_fraction=0.01)
    rows = write_sample(tmp_path, config.start_date, config.days, config.rows_per_day, config.seed,
                        dirty_fraction=config.dirty_fraction)
    written = pd.concat([pd.read_parquet(p) for p in sorted(tmp_path.glob("*.parquet"))], ignore_index=True)
    expected = generate_applications(config)
    assert rows == len(written) == len(expected)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    # A day's rows do not depend on how many days come after it.
    first_two = list(generate_days(GeneratorConfig(start_date=config.start_date, days=2, rows_per_day=300,
                                                   dirty_fraction=0)))
    again = list(generate_days(GeneratorConfig(start_date=config.start_date, days=6, rows_per_day=300,
                                               dirty_fraction=0)))[:2]
    for a, b in zip(first_two, again):
        pd.testing.assert_frame_equal(a, b)

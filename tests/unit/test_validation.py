"""Validation splits rows without losing any, and says why a row was quarantined."""

import pandas as pd
import pytest

from platform_assets.sample_data.generator import GeneratorConfig, generate_applications
from platform_assets.validate.rules import REASONS, SchemaViolation, split_valid_rows


@pytest.fixture(scope="module")
def clean():
    return generate_applications(GeneratorConfig(days=3, rows_per_day=100, dirty_fraction=0))


def test_clean_rows_all_pass(clean):
    result = split_valid_rows(clean)
    assert len(result.valid) == len(clean) and result.quarantined.empty


def test_each_broken_row_is_quarantined_with_its_reason(clean):
    df = clean.copy()
    df.loc[3, "income"] = -5.0
    df.loc[7, "region"] = "atlantis"
    df.loc[9, "loan_amount"] = df.loc[9, "income"] * 50
    df.loc[11, "application_id"] = df.loc[12, "application_id"]
    result = split_valid_rows(df)
    assert len(result.valid) + len(result.quarantined) == len(df)
    reasons = result.quarantined[REASONS]
    assert "greater_than(0)" in reasons[3] and "income" in reasons[3]
    assert "atlantis" in reasons[7]
    assert reasons[9] == "row: loan_within_income_multiple"
    assert {11, 12} <= set(result.quarantined.index)
    assert len(result.quarantined) == 5


def test_missing_column_is_a_clear_batch_error(clean):
    with pytest.raises(SchemaViolation, match="region"):
        split_valid_rows(clean.drop(columns=["region"]))


def test_valid_rows_are_typed(clean):
    df = clean.astype({"income": str})
    result = split_valid_rows(df)
    assert pd.api.types.is_float_dtype(result.valid["income"])


def test_unparseable_cells_are_row_reasons_not_batch_errors(clean):
    df = clean.astype({"income": object, "term_months": object, "application_ts": object})
    df.loc[3, "income"] = "abc"
    df.loc[4, "debt_to_income"] = float("inf")
    df.loc[5, "term_months"] = 36.5
    df.loc[6, "region"] = None
    df.loc[7, "application_ts"] = "not a date"
    result = split_valid_rows(df)
    reasons = result.quarantined[REASONS].to_dict()
    assert reasons == {
        3: "income: not a finite number (got 'abc')",
        4: "debt_to_income: not a finite number (got inf)",
        5: "term_months: not a whole number (got 36.5)",
        6: "region: missing",
        7: "application_ts: not a timestamp (got 'not a date')",
    }
    assert len(result.valid) == len(df) - 5
    assert pd.api.types.is_datetime64_any_dtype(result.valid["application_ts"])
    assert result.failure_counts["type"] == 5


def test_valid_output_fits_the_schema_exactly(clean):
    from platform_assets.validate.schema import ApplicationSchema

    df = clean.astype(str)  # as a CSV delivers it: every cell is text
    df.loc[2, "income"] = "-1"
    result = split_valid_rows(df)
    assert len(result.valid) == len(df) - 1
    ApplicationSchema.validate(result.valid)
    assert result.valid["term_months"].dtype == "int64"


def test_an_application_id_valid_on_another_day_is_quarantined_with_that_day():
    from platform_assets.validate.rules import quarantine_known_keys

    df = generate_applications(GeneratorConfig(days=1, rows_per_day=20, dirty_fraction=0))
    result = split_valid_rows(df.reset_index(drop=True))
    known = pd.Series({result.valid["application_id"].iloc[0]: "2026-01-05"})
    moved = quarantine_known_keys(result, known)
    assert len(moved.valid) + len(moved.quarantined) == len(df)
    assert len(moved.quarantined) == len(result.quarantined) + 1
    assert "application_id: already valid on day 2026-01-05" in moved.quarantined[REASONS].iloc[-1]
    assert moved.failure_counts["unique_across_days"] == 1


def test_text_cells_parse_as_numbers_or_give_a_reason():
    from platform_assets.validate.rules import _parse_column

    values = pd.Series(["1e3", " 12 ", "abc", "inf", None, 7.5, "-0.25"], name="income")
    parsed, reasons = _parse_column(values, "float64")
    assert parsed[[0, 1, 5, 6]].tolist() == [1000.0, 12.0, 7.5, -0.25]
    assert reasons.sort_index().tolist() == [
        "income: not a finite number (got 'abc')",
        "income: not a finite number (got 'inf')",
        "income: missing",
    ]

"""Validation splits rows without losing any, and says why a row was quarantined."""

import pandas as pd
import pytest

from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from platform_assets.declared import use_case
from platform_assets.validate.rules import REASONS, SchemaViolation, split_valid_rows

SOURCE = use_case("loan_default").source
RULES = (SOURCE.schema_model(), SOURCE.pii)


@pytest.fixture(scope="module")
def clean():
    return generate_applications(GeneratorConfig(days=3, rows_per_day=100, dirty_fraction=0))


def test_clean_rows_all_pass(clean):
    result = split_valid_rows(clean, *RULES)
    assert len(result.valid) == len(clean) and result.quarantined.empty


def test_each_broken_row_is_quarantined_with_its_reason(clean):
    df = clean.copy()
    df.loc[3, "income"] = -5.0
    df.loc[7, "region"] = "atlantis"
    df.loc[9, "loan_amount"] = df.loc[9, "income"] * 50
    df.loc[11, "application_id"] = df.loc[12, "application_id"]  # a duplicate is not a row rule: both pass here
    result = split_valid_rows(df, *RULES)
    assert len(result.valid) + len(result.quarantined) == len(df)
    reasons = result.quarantined[REASONS]
    assert "greater_than(0)" in reasons[3] and "income" in reasons[3]
    assert "atlantis" in reasons[7]
    assert reasons[9] == "row: loan_within_income_multiple"
    assert len(result.quarantined) == 3


def test_missing_column_is_a_clear_batch_error(clean):
    with pytest.raises(SchemaViolation, match="region"):
        split_valid_rows(clean.drop(columns=["region"]), *RULES)


def test_valid_rows_are_typed(clean):
    df = clean.astype({"income": str})
    result = split_valid_rows(df, *RULES)
    assert pd.api.types.is_float_dtype(result.valid["income"])


def test_unparseable_cells_are_row_reasons_not_batch_errors(clean):
    df = clean.astype({"income": object, "term_months": object, "application_ts": object})
    df.loc[3, "income"] = "abc"
    df.loc[4, "debt_to_income"] = float("inf")
    df.loc[5, "term_months"] = 36.5
    df.loc[6, "region"] = None
    df.loc[7, "application_ts"] = "not a date"
    result = split_valid_rows(df, *RULES)
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
    from platform_assets.use_cases.loan_default.schema import ApplicationSchema

    df = clean.astype(str)  # as a CSV delivers it: every cell is text
    df.loc[2, "income"] = "-1"
    result = split_valid_rows(df, *RULES)
    assert len(result.valid) == len(df) - 1
    ApplicationSchema.validate(result.valid)
    assert result.valid["term_months"].dtype == "int64"


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


def test_reasons_never_show_personal_data_but_show_other_values(clean):
    df = clean.astype({"email": object, "phone": object, "income": object}).copy()
    df.loc[1, "email"] = "Jane Doe@example.com"
    df.loc[2, "phone"] = "call +44 7700 900123"
    df.loc[3, "email"] = 12345  # a number where text is expected
    df.loc[4, "income"] = "abc"
    df.loc[5, "region"] = "atlantis"
    result = split_valid_rows(df, *RULES)
    reasons = result.quarantined[REASONS].to_dict()
    assert reasons[1] == "email: valid_email (value withheld: personal data)"
    assert reasons[2] == "phone: valid_phone_number (value withheld: personal data)"
    assert reasons[3] == "email: valid_email (value withheld: personal data)"
    assert reasons[4] == "income: not a finite number (got 'abc')"
    assert "(got 'atlantis')" in reasons[5]
    # The masked value stays in its column; the rule names the column and the check only.
    assert result.quarantined.loc[1, "email"] == "Jane Doe@example.com"


def test_a_type_reason_of_a_personal_column_withholds_the_value():
    from platform_assets.validate.rules import _parse_column

    _, reasons = _parse_column(pd.Series(["+44 7700 900123", "abc"], name="phone"), "float64", personal=True)
    assert reasons.tolist() == ["phone: not a finite number (value withheld: personal data)"] * 2

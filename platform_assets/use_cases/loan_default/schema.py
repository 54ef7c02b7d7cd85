"""The pandera model of a valid loan application."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from platform_assets.validate.patterns import fullmatch

# MAX_LOAN_TO_INCOME is imported by name here too (benchmarks read it from the schema).
from platform_assets.use_cases.loan_default.bounds import MAX_LOAN_TO_INCOME, RULES, loan_within_income_multiple  # noqa: F401

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+?[0-9 ()-]{7,20}$"
# The business key and the event time that orders its copies: the first copy is
# the valid one, later copies are quarantined (platform_assets.validate.duplicates).
BUSINESS_KEY = "application_id"
EVENT_TIME = "application_ts"


def _bounded(column: str, **options) -> pa.Field:
    """The column's field with its declared bounds (``bounds.RULES``: the model server reads the same)."""
    return pa.Field(**RULES.fields[column].checks(), **options)


class ApplicationSchema(pa.DataFrameModel):
    """A loan application that may be used for features and training.

    The application id is not declared unique here: which copy of an id is
    valid depends on copies in other rows and days (the duplicate policy).
    """

    application_id: Series[str] = pa.Field(nullable=False)
    applicant_id: Series[int] = _bounded("applicant_id")
    applicant_name: Series[str] = pa.Field(nullable=False)
    email: Series[str] = pa.Field(nullable=False)
    phone: Series[str] = pa.Field(nullable=False)
    application_ts: Series[pa.DateTime] = pa.Field(nullable=False)
    income: Series[float] = _bounded("income")
    loan_amount: Series[float] = _bounded("loan_amount")
    term_months: Series[int] = _bounded("term_months")
    employment_years: Series[float] = _bounded("employment_years", nullable=False)
    credit_history_years: Series[float] = _bounded("credit_history_years")
    num_open_accounts: Series[int] = _bounded("num_open_accounts")
    num_delinquencies: Series[int] = _bounded("num_delinquencies")
    debt_to_income: Series[float] = _bounded("debt_to_income")
    region: Series[str] = _bounded("region")
    age_band: Series[str] = _bounded("age_band")
    # The outcome: in a history extract it comes with the application; for a new application it is
    # unknown (empty) and arrives later in an outcome file (monitor/outcomes). Both or neither.
    is_default: Series[pd.Int64Dtype] = _bounded("is_default", nullable=True)
    label_ts: Series[pa.DateTime] = pa.Field(nullable=True)

    # Named checks on personal data: the reason says which rule failed, never the value.
    @pa.check("email", name="valid_email")
    def valid_email(cls, email):  # noqa: N805
        """One ``@``, a dot in the domain, no spaces."""
        return fullmatch(email, EMAIL_PATTERN)

    @pa.check("phone", name="valid_phone_number")
    def valid_phone_number(cls, phone):  # noqa: N805
        """Digits, spaces, brackets and dashes (7 to 20), an optional leading ``+``."""
        return fullmatch(phone, PHONE_PATTERN)

    @pa.dataframe_check(name="loan_within_income_multiple")
    def loan_within_income_multiple(cls, df):  # noqa: N805
        """The loan is at most ``MAX_LOAN_TO_INCOME`` times the yearly income."""
        return loan_within_income_multiple(df["loan_amount"], df["income"])

    @pa.check("application_ts", name="not_in_the_future")
    def not_in_the_future(cls, ts):  # noqa: N805
        """An application cannot be dated after the moment it is validated."""
        return ts <= pd.Timestamp.now(tz="UTC").tz_localize(None)

    @pa.dataframe_check(name="label_after_application")
    def label_after_application(cls, df):  # noqa: N805
        """The outcome cannot be known before the application was made."""
        return df["label_ts"].isna() | (df["label_ts"] >= df["application_ts"])

    @pa.dataframe_check(name="outcome_and_its_time_together")
    def outcome_and_its_time_together(cls, df):  # noqa: N805
        """An outcome comes with the time it became known, and a time only with an outcome."""
        return df["is_default"].isna() == df["label_ts"].isna()

    class Config:
        coerce = True
        strict = False

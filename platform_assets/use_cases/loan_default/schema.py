"""The pandera model of a valid loan application."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from platform_assets.use_cases.loan_default.vocabulary import AGE_BANDS, REGIONS, TERMS_MONTHS

# Largest loan as a multiple of yearly income that we accept as plausible.
MAX_LOAN_TO_INCOME = 10.0
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+?[0-9 ()-]{7,20}$"
# The business key and the event time that orders its copies: the first copy is
# the valid one, later copies are quarantined (platform_assets.validate.duplicates).
BUSINESS_KEY = "application_id"
EVENT_TIME = "application_ts"


class ApplicationSchema(pa.DataFrameModel):
    """A loan application that may be used for features and training.

    The application id is not declared unique here: which copy of an id is
    valid depends on copies in other rows and days (the duplicate policy).
    """

    application_id: Series[str] = pa.Field(nullable=False)
    applicant_id: Series[int] = pa.Field(ge=0)
    applicant_name: Series[str] = pa.Field(nullable=False)
    email: Series[str] = pa.Field(nullable=False)
    phone: Series[str] = pa.Field(nullable=False)
    application_ts: Series[pa.DateTime] = pa.Field(nullable=False)
    income: Series[float] = pa.Field(gt=0)
    loan_amount: Series[float] = pa.Field(gt=0)
    term_months: Series[int] = pa.Field(isin=list(TERMS_MONTHS))
    employment_years: Series[float] = pa.Field(ge=0, nullable=False)
    credit_history_years: Series[float] = pa.Field(ge=0)
    num_open_accounts: Series[int] = pa.Field(ge=0)
    num_delinquencies: Series[int] = pa.Field(ge=0)
    debt_to_income: Series[float] = pa.Field(ge=0, le=1)
    region: Series[str] = pa.Field(isin=list(REGIONS))
    age_band: Series[str] = pa.Field(isin=list(AGE_BANDS))
    # The outcome: in a history extract it comes with the application; for a new application it is
    # unknown (empty) and arrives later in an outcome file (monitor/outcomes). Both or neither.
    is_default: Series[pd.Int64Dtype] = pa.Field(isin=[0, 1], nullable=True)
    label_ts: Series[pa.DateTime] = pa.Field(nullable=True)

    # Named checks on personal data: the reason says which rule failed, never the value.
    @pa.check("email", name="valid_email")
    def valid_email(cls, email):  # noqa: N805
        """One ``@``, a dot in the domain, no spaces."""
        return email.str.fullmatch(EMAIL_PATTERN)

    @pa.check("phone", name="valid_phone_number")
    def valid_phone_number(cls, phone):  # noqa: N805
        """Digits, spaces, brackets and dashes (7 to 20), an optional leading ``+``."""
        return phone.str.fullmatch(PHONE_PATTERN)

    @pa.dataframe_check(name="loan_within_income_multiple")
    def loan_within_income_multiple(cls, df):  # noqa: N805
        """The loan is at most ``MAX_LOAN_TO_INCOME`` times the yearly income."""
        return df["loan_amount"] <= MAX_LOAN_TO_INCOME * df["income"].abs()

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

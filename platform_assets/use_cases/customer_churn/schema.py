"""The pandera model of a valid subscription snapshot (customer churn)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

PLANS = ("basic", "standard", "premium")
PAYMENT_METHODS = ("card", "bank_debit", "invoice")
GENDERS = ("female", "male", "nonbinary")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class SubscriptionSchema(pa.DataFrameModel):
    """One customer's subscription as of a monthly snapshot, and whether it was cancelled within 90 days."""

    subscription_id: Series[str] = pa.Field(nullable=False)
    contact_email: Series[str] = pa.Field(nullable=False)
    snapshot_ts: Series[pa.DateTime] = pa.Field(nullable=False)
    tenure_months: Series[int] = pa.Field(ge=0, le=600)
    monthly_charges: Series[float] = pa.Field(gt=0, le=10_000)
    support_calls_90d: Series[int] = pa.Field(ge=0)
    plan: Series[str] = pa.Field(isin=list(PLANS))
    payment_method: Series[str] = pa.Field(isin=list(PAYMENT_METHODS))
    gender: Series[str] = pa.Field(isin=list(GENDERS))
    churned: Series[int] = pa.Field(isin=[0, 1])

    @pa.check("contact_email", name="valid_email")
    def valid_email(cls, email):  # noqa: N805
        """One ``@``, a dot in the domain, no spaces."""
        return email.str.fullmatch(EMAIL_PATTERN)

    @pa.check("snapshot_ts", name="not_in_the_future")
    def not_in_the_future(cls, ts):  # noqa: N805
        """A snapshot cannot be dated after the moment it is validated."""
        return ts <= pd.Timestamp.now(tz="UTC").tz_localize(None)

    class Config:
        coerce = True
        strict = False

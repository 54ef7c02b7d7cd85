"""The pandera model of a valid subscription snapshot (customer churn)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from platform_assets.validate.patterns import fullmatch

# The levels are imported by name here too (the generator reads them from the schema).
from platform_assets.use_cases.customer_churn.bounds import GENDERS, PAYMENT_METHODS, PLANS, RULES  # noqa: F401

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _bounded(column: str) -> pa.Field:
    """The column's field with its declared bounds (``bounds.RULES``: the model server reads the same)."""
    return pa.Field(**RULES.fields[column].checks())


class SubscriptionSchema(pa.DataFrameModel):
    """One customer's subscription as of a monthly snapshot, and whether it was cancelled within 90 days."""

    subscription_id: Series[str] = pa.Field(nullable=False)
    contact_email: Series[str] = pa.Field(nullable=False)
    snapshot_ts: Series[pa.DateTime] = pa.Field(nullable=False)
    tenure_months: Series[int] = _bounded("tenure_months")
    monthly_charges: Series[float] = _bounded("monthly_charges")
    support_calls_90d: Series[int] = _bounded("support_calls_90d")
    plan: Series[str] = _bounded("plan")
    payment_method: Series[str] = _bounded("payment_method")
    gender: Series[str] = _bounded("gender")
    churned: Series[int] = _bounded("churned")

    @pa.check("contact_email", name="valid_email")
    def valid_email(cls, email):  # noqa: N805
        """One ``@``, a dot in the domain, no spaces."""
        return fullmatch(email, EMAIL_PATTERN)

    @pa.check("snapshot_ts", name="not_in_the_future")
    def not_in_the_future(cls, ts):  # noqa: N805
        """A snapshot cannot be dated after the moment it is validated."""
        return ts <= pd.Timestamp.now(tz="UTC").tz_localize(None)

    class Config:
        coerce = True
        strict = False

"""The bounds of a valid subscription snapshot: one home for the validation stage and the model server.

Plain Python (the serving environment imports it; see ``rules`` in the source's
declaration). :class:`~platform_assets.use_cases.customer_churn.schema.SubscriptionSchema`
builds its fields from :data:`RULES`; the model server refuses a caller's row that breaks one.
"""

from __future__ import annotations

from platform_assets.declarations import FieldRule, Rules

PLANS = ("basic", "standard", "premium")
PAYMENT_METHODS = ("card", "bank_debit", "invoice")
GENDERS = ("female", "male", "nonbinary")

RULES = Rules(fields={
    "tenure_months": FieldRule(whole=True, ge=0, le=600),
    "monthly_charges": FieldRule(gt=0, le=10_000),
    "support_calls_90d": FieldRule(whole=True, ge=0),
    "plan": FieldRule(isin=PLANS),
    "payment_method": FieldRule(isin=PAYMENT_METHODS),
    "gender": FieldRule(isin=GENDERS),
    "churned": FieldRule(whole=True, isin=(0, 1)),
})

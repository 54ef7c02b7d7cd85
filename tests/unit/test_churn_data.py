"""The customer-churn use case's own data: its generator and its schema agree, and bad rows are quarantined."""

import numpy as np
import pandas as pd

from platform_assets.use_cases.customer_churn.generator import COLUMNS, ChurnConfig, generate_subscriptions
from platform_assets.use_cases.customer_churn.schema import SubscriptionSchema
from platform_assets.validate.rules import REASONS, split_valid_rows


def test_generated_snapshots_fit_the_schema_except_the_planted_bad_charges():
    df = generate_subscriptions(ChurnConfig(days=5, rows_per_day=400, dirty_fraction=0.02))
    assert tuple(df.columns) == COLUMNS == tuple(SubscriptionSchema.to_schema().columns)
    result = split_valid_rows(df, SubscriptionSchema, ("contact_email",))
    planted = int((df["monthly_charges"] < 0).sum())
    assert planted > 0 and len(result.quarantined) == planted and len(result.valid) == len(df) - planted
    assert result.quarantined[REASONS].str.contains("monthly_charges").all()
    # Reasons never show an email, even for a broken one.
    broken = df.head(3).assign(contact_email=["not-an-email", "a@b", "x y@z.io"])
    reasons = split_valid_rows(broken, SubscriptionSchema, ("contact_email",)).quarantined[REASONS]
    assert len(reasons) == 3 and not any(e in r for r in reasons for e in ("not-an-email", "a@b", "x y@z.io"))


def test_churn_depends_on_support_calls_and_not_on_gender():
    df = generate_subscriptions(ChurnConfig(days=20, rows_per_day=500, dirty_fraction=0))
    by_calls = df.groupby(np.minimum(df["support_calls_90d"], 4))["churned"].mean()
    assert by_calls.is_monotonic_increasing and by_calls.iloc[-1] > by_calls.iloc[0] + 0.3
    by_gender = df.groupby("gender")["churned"].mean()
    assert by_gender.max() - by_gender.min() < 0.06
    assert 0.1 < df["churned"].mean() < 0.5
    assert pd.api.types.is_datetime64_any_dtype(df["snapshot_ts"])


def test_no_use_case_takes_its_label_time_or_keys_as_model_inputs():
    """The training set's label time (label_ts) is never a feature, whatever the source calls it (or if it has none)."""
    from platform_assets.declared import use_cases

    for declared in use_cases():
        assert {"label_ts", "event_timestamp", "split", declared.label, *declared.entity_keys,
                *declared.source.protected, *declared.source.pii} <= declared.never_features

-- One row per valid subscription snapshot, with the columns features are built from.
select
    subscription_id,
    cast(snapshot_ts as timestamp) as snapshot_ts,
    tenure_months,
    monthly_charges,
    support_calls_90d,
    plan,
    payment_method,
    gender,
    churned
from {{ source('validated_subscriptions', 'subscriptions') }}

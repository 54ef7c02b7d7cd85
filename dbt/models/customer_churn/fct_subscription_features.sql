-- Snapshot-level features (Feast entity `subscription`), known at the snapshot's time.
select
    subscription_id,
    snapshot_ts as event_timestamp,
    cast(tenure_months as double) as tenure_months,
    monthly_charges,
    cast(support_calls_90d as double) as support_calls_90d,
    plan,
    payment_method
from {{ ref('stg_subscriptions') }}

"""Feast definitions of the customer-churn use case: its entity, the Parquet export of its dbt mart,
its view and the model's feature service (platform_assets/defs/customer_churn/defs.yaml)."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

from platform_assets import settings

# The state layout decides where the exports are (platform_assets.settings; PLATFORM_HOME).
DATA_DIR = settings.paths().feast_data

# One monthly snapshot of a customer's subscription.
subscription = Entity(
    name="subscription",
    join_keys=["subscription_id"],
    value_type=ValueType.STRING,
    description="A subscription as of one monthly snapshot.",
)

subscription_features_source = FileSource(
    name="fct_subscription_features",
    path=str(DATA_DIR / "fct_subscription_features.parquet"),
    timestamp_field="event_timestamp",
)

# What the snapshot says about the subscription. Offline only: at serving time these come with the request.
subscription_features = FeatureView(
    name="subscription_features",
    entities=[subscription],
    ttl=timedelta(days=2),
    schema=[
        Field(name="tenure_months", dtype=Float64),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="support_calls_90d", dtype=Float64),
        Field(name="plan", dtype=String),
        Field(name="payment_method", dtype=String),
    ],
    online=False,
    source=subscription_features_source,
    tags={"dbt_model": "fct_subscription_features"},
)

customer_churn_model = FeatureService(
    name="customer_churn_model",
    features=[subscription_features],
    description="Inputs of the customer-churn classifier.",
)

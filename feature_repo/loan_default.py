"""Feast definitions: entities, Parquet sources over the dbt marts, views, the model's service.

The sources are Parquet exports of the dbt marts, written by the platform's
``feature_store`` asset under ``$PLATFORM_HOME/feast/data``.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64, String

from platform_assets import settings

# The state layout decides where the exports are (platform_assets.settings; PLATFORM_HOME).
DATA_DIR = settings.paths().feast_data

# One loan application; its features are known when it is made.
application = Entity(
    name="application",
    join_keys=["application_id"],
    value_type=ValueType.STRING,
    description="A loan application.",
)

# A person who applies, possibly many times.
applicant = Entity(
    name="applicant",
    join_keys=["applicant_id"],
    value_type=ValueType.INT64,
    description="A loan applicant.",
)

# dbt mart fct_application_features, exported to Parquet.
application_features_source = FileSource(
    name="fct_application_features",
    path=str(DATA_DIR / "fct_application_features.parquet"),
    timestamp_field="event_timestamp",
)

# dbt mart fct_applicant_history, exported to Parquet.
applicant_history_source = FileSource(
    name="fct_applicant_history",
    path=str(DATA_DIR / "fct_applicant_history.parquet"),
    timestamp_field="event_timestamp",
)

# dbt mart fct_applicant_activity, exported to Parquet.
applicant_activity_source = FileSource(
    name="fct_applicant_activity",
    path=str(DATA_DIR / "fct_applicant_activity.parquet"),
    timestamp_field="event_timestamp",
)

# What the application says about the loan and the applicant's finances. Offline
# only: training joins them at the application's time, and at serving time they
# come with the request itself.
application_features = FeatureView(
    name="application_features",
    entities=[application],
    ttl=timedelta(days=2),
    schema=[
        Field(name="income", dtype=Float64),
        Field(name="loan_amount", dtype=Float64),
        Field(name="term_months", dtype=Float64),
        Field(name="employment_years", dtype=Float64),
        Field(name="credit_history_years", dtype=Float64),
        Field(name="num_open_accounts", dtype=Float64),
        Field(name="num_delinquencies", dtype=Float64),
        Field(name="debt_to_income", dtype=Float64),
        Field(name="loan_to_income", dtype=Float64),
        Field(name="payment_to_monthly_income", dtype=Float64),
        Field(name="region", dtype=String),
        Field(name="loan_to_avg_prior_loan_365d", dtype=Float64),
    ],
    online=False,
    source=application_features_source,
    tags={"dbt_model": "fct_application_features"},
)

# The applicant's earlier applications, as of each application's day. Offline only:
# the server computes the same numbers from `applicant_activity` at request time.
# TTL: a year, the longest window.
applicant_history = FeatureView(
    name="applicant_history",
    entities=[applicant],
    ttl=timedelta(days=365),
    schema=[
        Field(name="prior_applications_30d", dtype=Float64),
        Field(name="prior_applications_90d", dtype=Float64),
        Field(name="prior_applications_365d", dtype=Float64),
        Field(name="prior_loan_sum_30d", dtype=Float64),
        Field(name="prior_loan_sum_90d", dtype=Float64),
        Field(name="prior_loan_sum_365d", dtype=Float64),
        Field(name="avg_prior_loan_amount_365d", dtype=Float64),
        Field(name="days_since_last_application", dtype=Float64),
    ],
    online=False,
    source=applicant_history_source,
    tags={"dbt_model": "fct_applicant_history"},
)

# Each applicant's applications (times, loan amounts) over the last 365 days: the
# online store keeps the latest row per applicant, from which the model server
# computes the history features as of a request's day (platform_assets/use_cases/loan_default/request_features.py).
applicant_activity = FeatureView(
    name="applicant_activity",
    entities=[applicant],
    ttl=timedelta(days=365),
    schema=[
        Field(name="recent_application_ts", dtype=Array(Float64)),
        Field(name="recent_loan_amounts", dtype=Array(Float64)),
    ],
    online=True,
    source=applicant_activity_source,
    tags={"dbt_model": "fct_applicant_activity"},
)

# Exactly the features the loan-default model is trained and served on, named one
# by one: a feature added to a view is not a model input until it is listed here.
loan_default_model = FeatureService(
    name="loan_default_model",
    features=[
        application_features[[
            "income", "loan_amount", "term_months", "employment_years", "credit_history_years",
            "num_open_accounts", "num_delinquencies", "debt_to_income", "loan_to_income",
            "payment_to_monthly_income", "region",
        ]],
        applicant_history[[
            "prior_applications_90d", "prior_applications_365d", "avg_prior_loan_amount_365d",
            "days_since_last_application",
        ]],
    ],
    description="Inputs of the loan-default classifier.",
)

# What the model server reads online for a request: the applicant's recent applications.
loan_default_online = FeatureService(
    name="loan_default_online",
    features=[applicant_activity[["recent_application_ts", "recent_loan_amounts"]]],
    description="Online inputs of the loan-default server: history features are computed from them per request.",
)

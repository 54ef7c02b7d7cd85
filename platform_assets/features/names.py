"""Names shared by the feature stage and its consumers (no heavy imports)."""

FEATURE_SERVICE = "loan_default_model"
# dbt marts exported for Feast, each a FileSource in feature_repo/features.py.
MART_TABLES = ("fct_application_features", "fct_applicant_history")
ENTITY_COLUMNS = ("application_id", "applicant_id", "event_timestamp")
SPLITS = ("train", "validation", "test")
HISTORY_FEATURES = (
    "prior_applications_90d",
    "prior_applications_365d",
    "avg_prior_loan_amount_365d",
    "days_since_last_application",
)

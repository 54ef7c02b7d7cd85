"""Names shared by the feature stage and its consumers (no heavy imports)."""

FEATURE_SERVICE = "loan_default_model"
# dbt marts exported for Feast, each a FileSource in feature_repo/features.py.
MART_TABLES = ("fct_application_features", "fct_applicant_history")
ENTITY_COLUMNS = ("application_id", "applicant_id", "event_timestamp")
SPLITS = ("train", "validation", "test")
# Feature columns of the fct_applicant_history mart (view `applicant_history`);
# the feature service picks the model's inputs among them.
HISTORY_FEATURES = (
    "prior_applications_30d",
    "prior_applications_90d",
    "prior_applications_365d",
    "prior_loan_sum_30d",
    "prior_loan_sum_90d",
    "prior_loan_sum_365d",
    "avg_prior_loan_amount_365d",
    "days_since_last_application",
)

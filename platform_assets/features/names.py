"""Names shared by the feature stage and its consumers (no heavy imports)."""

from platform_assets.features.history import HISTORY_FEATURES  # noqa: F401 - one definition, re-exported

# The model's inputs (training reads them point-in-time from the offline store).
FEATURE_SERVICE = "loan_default_model"
# What the model server reads online: each applicant's recent applications.
ONLINE_FEATURE_SERVICE = "loan_default_online"
ONLINE_VIEW = "applicant_activity"
ONLINE_FEATURES = ("recent_application_ts", "recent_loan_amounts")
# dbt marts exported for Feast, each a FileSource in feature_repo/loan_default.py.
MART_TABLES = ("fct_application_features", "fct_applicant_history", "fct_applicant_activity")
# The marts of the online views: only their changes need materializing.
ONLINE_MARTS = ("fct_applicant_activity",)
ENTITY_COLUMNS = ("application_id", "applicant_id", "event_timestamp")
SPLITS = ("train", "validation", "test")

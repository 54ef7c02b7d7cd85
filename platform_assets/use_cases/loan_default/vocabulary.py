"""The default domain's vocabulary (credit-risk loan applications), free of heavy imports."""

REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-25", "26-40", "41-60", "60+")
TERMS_MONTHS = (36, 60)

# Columns of a landing file, in order.
COLUMNS = (
    "application_id",
    "applicant_id",
    "applicant_name",
    "email",
    "phone",
    "application_ts",
    "income",
    "loan_amount",
    "term_months",
    "employment_years",
    "credit_history_years",
    "num_open_accounts",
    "num_delinquencies",
    "debt_to_income",
    "region",
    "age_band",
    "is_default",
    "label_ts",
)
# The protected attribute: never a model input, always a fairness slice.
PROTECTED_ATTRIBUTE = "age_band"
LABEL = "is_default"
# Personal data: replaced by keyed HMAC tokens before rows leave the validation stage.
PII_COLUMNS = ("applicant_name", "email", "phone")

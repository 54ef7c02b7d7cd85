"""The bounds of a valid loan application: one home for the validation stage and the model server.

Plain Python (the serving environment imports it; see ``rules`` in the source's
declaration). :class:`~platform_assets.use_cases.loan_default.schema.ApplicationSchema`
builds its fields from :data:`RULES`, so these are the rows the validation stage
quarantines; the model server refuses a caller's row that breaks one of them.
"""

from __future__ import annotations

from platform_assets.declarations import FieldRule, RowRule, Rules
from platform_assets.use_cases.loan_default.vocabulary import AGE_BANDS, REGIONS, TERMS_MONTHS

# Largest loan as a multiple of yearly income that we accept as plausible.
MAX_LOAN_TO_INCOME = 10.0


def loan_within_income_multiple(loan_amount, income):
    """The loan is at most :data:`MAX_LOAN_TO_INCOME` times the yearly income (Series, arrays or numbers)."""
    return loan_amount <= MAX_LOAN_TO_INCOME * abs(income)


RULES = Rules(
    fields={
        "applicant_id": FieldRule(whole=True, ge=0),
        "income": FieldRule(gt=0),
        "loan_amount": FieldRule(gt=0),
        "term_months": FieldRule(whole=True, isin=TERMS_MONTHS),
        "employment_years": FieldRule(ge=0),
        "credit_history_years": FieldRule(ge=0),
        "num_open_accounts": FieldRule(whole=True, ge=0),
        "num_delinquencies": FieldRule(whole=True, ge=0),
        "debt_to_income": FieldRule(ge=0, le=1),
        "region": FieldRule(isin=REGIONS),
        "age_band": FieldRule(isin=AGE_BANDS),
        "is_default": FieldRule(whole=True, isin=(0, 1)),
    },
    rows=(
        RowRule("loan_within_income_multiple", ("loan_amount", "income"), loan_within_income_multiple,
                f"loan_amount <= {MAX_LOAN_TO_INCOME:g} * |income|"),
    ),
)

-- One row per valid application, with the columns features are built from.
select
    application_id,
    applicant_id,
    cast(application_ts as timestamp) as application_ts,
    income,
    loan_amount,
    term_months,
    employment_years,
    credit_history_years,
    num_open_accounts,
    num_delinquencies,
    debt_to_income,
    region,
    age_band,
    is_default,
    cast(label_ts as timestamp) as label_ts
from {{ source('validated', 'applications') }}

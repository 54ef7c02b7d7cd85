-- Application-level features, known at the time of the application.
select
    application_id,
    applicant_id,
    application_ts as event_timestamp,
    income,
    loan_amount,
    cast(term_months as double) as term_months,
    employment_years,
    credit_history_years,
    cast(num_open_accounts as double) as num_open_accounts,
    cast(num_delinquencies as double) as num_delinquencies,
    debt_to_income,
    region,
    loan_amount / income as loan_to_income,
    (loan_amount / term_months) / (income / 12.0) as payment_to_monthly_income
from {{ ref('stg_applications') }}

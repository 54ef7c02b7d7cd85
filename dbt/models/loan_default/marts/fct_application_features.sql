-- Application-level features, known at the time of the application (Feast entity
-- `application`); the loan compared with the applicant's earlier loans comes from
-- the windowed history.
select
    apps.application_id,
    apps.applicant_id,
    apps.application_ts as event_timestamp,
    apps.income,
    apps.loan_amount,
    cast(apps.term_months as double) as term_months,
    apps.employment_years,
    apps.credit_history_years,
    cast(apps.num_open_accounts as double) as num_open_accounts,
    cast(apps.num_delinquencies as double) as num_delinquencies,
    apps.debt_to_income,
    apps.region,
    apps.loan_amount / apps.income as loan_to_income,
    (apps.loan_amount / apps.term_months) / (apps.income / 12.0) as payment_to_monthly_income,
    windows.loan_to_avg_prior_loan_365d
from {{ ref('stg_applications') }} as apps
inner join {{ ref('int_applicant_windows') }} as windows on apps.application_id = windows.application_id

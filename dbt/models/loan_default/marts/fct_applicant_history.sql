-- Applicant history as of each application (Feast entity `applicant`): counts and
-- loan sums over 30/90/365 days and days since the last application, all from
-- applications strictly before this one (see int_applicant_windows).
select
    applicant_id,
    application_id,
    application_ts as event_timestamp,
    prior_applications_30d,
    prior_applications_90d,
    prior_applications_365d,
    prior_loan_sum_30d,
    prior_loan_sum_90d,
    prior_loan_sum_365d,
    avg_prior_loan_amount_365d,
    days_since_last_application
from {{ ref('int_applicant_windows') }}

-- Applicant-level history as of each application: only applications strictly
-- before the current one count, so a row never sees its own future.
with apps as (
    select applicant_id, application_id, application_ts, loan_amount
    from {{ ref('stg_applications') }}
)
select
    applicant_id,
    application_id,
    application_ts as event_timestamp,
    cast(count(*) over w90 as double) as prior_applications_90d,
    cast(count(*) over w365 as double) as prior_applications_365d,
    coalesce(avg(loan_amount) over w365, 0.0) as avg_prior_loan_amount_365d,
    coalesce(
        date_diff('second', lag(application_ts) over (partition by applicant_id order by application_ts, application_id), application_ts) / 86400.0,
        -1.0
    ) as days_since_last_application
from apps
window
    w90 as (partition by applicant_id order by application_ts
            range between interval 90 days preceding and interval 1 microsecond preceding),
    w365 as (partition by applicant_id order by application_ts
             range between interval 365 days preceding and interval 1 microsecond preceding)

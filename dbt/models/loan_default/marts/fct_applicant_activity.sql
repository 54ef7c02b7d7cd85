-- Each applicant's recent applications, as the online store serves them (Feast
-- entity `applicant`, view `applicant_activity`): one row per applicant and day
-- they applied, stamped with their last application that day, holding the times
-- (epoch seconds, UTC) and loan amounts of their applications from 365 days before
-- that day up to and including it, so that a request on that day or later finds
-- its whole 365-day window. Materialized online, the latest row per applicant is
-- everything the model server needs to compute the history features of a new
-- request as of the start of its day (platform_assets/features/history.py): the
-- numbers int_applicant_windows computes for training.
with apps as (
    select
        applicant_id,
        application_ts,
        cast(application_ts as date) as application_day,
        loan_amount
    from {{ ref('stg_applications') }}
),

days as (
    select applicant_id, application_day, max(application_ts) as last_ts
    from apps
    group by applicant_id, application_day
)

select
    days.applicant_id,
    days.last_ts as event_timestamp,
    list(epoch_us(apps.application_ts) / 1e6 order by apps.application_ts, apps.loan_amount) as recent_application_ts,
    list(apps.loan_amount order by apps.application_ts, apps.loan_amount) as recent_loan_amounts
from days
inner join apps
    on apps.applicant_id = days.applicant_id
    and apps.application_day <= days.application_day
    and apps.application_day >= days.application_day - 365
group by days.applicant_id, days.application_day, days.last_ts

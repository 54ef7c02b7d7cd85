-- Each applicant's recent applications, as the online store serves them (Feast
-- entity `applicant`, view `applicant_activity`): one row per applicant and day
-- they applied, stamped with their last application that day, holding the times
-- (epoch seconds, UTC) and loan amounts of their applications from 365 days before
-- that day up to and including it, so that a request on that day or later finds
-- its whole 365-day window. Materialized online, the latest row per applicant is
-- everything the model server needs to compute the history features of a new
-- request as of the start of its day (platform_assets/features/history.py): the
-- numbers int_applicant_windows computes for training.
--
-- Built in buckets of applicants (var `applicant_buckets`, default 8), one after
-- the other: the ordered lists of a bucket are aggregated before the next bucket's
-- start, so DuckDB holds an eighth of the groups at once (at 10M rows the one-pass
-- aggregate needed more than its 2GB memory limit, and ordered list aggregates do
-- not spill). An applicant's rows all fall in one bucket.
{% set buckets = var('applicant_buckets', 8) %}
with apps as (
    select
        applicant_id,
        application_ts,
        cast(application_ts as date) as application_day,
        loan_amount,
        hash(applicant_id) % {{ buckets }} as bucket
    from {{ ref('stg_applications') }}
),

days as (
    select applicant_id, application_day, max(application_ts) as last_ts, any_value(bucket) as bucket
    from apps
    group by applicant_id, application_day
)

{% for i in range(buckets) %}
select
    days.applicant_id,
    days.last_ts as event_timestamp,
    list(epoch_us(apps.application_ts) / 1e6 order by apps.application_ts, apps.loan_amount) as recent_application_ts,
    list(apps.loan_amount order by apps.application_ts, apps.loan_amount) as recent_loan_amounts
from (select * from days where bucket = {{ i }}) as days
inner join (select * from apps where bucket = {{ i }}) as apps
    on apps.applicant_id = days.applicant_id
    and apps.application_day <= days.application_day
    and apps.application_day >= days.application_day - 365
group by days.applicant_id, days.application_day, days.last_ts
{% if not loop.last %}union all{% endif %}
{% endfor %}

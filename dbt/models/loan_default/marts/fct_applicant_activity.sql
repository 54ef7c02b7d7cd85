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
-- One window pass, not a join of every day to its year: DuckDB sorts and partitions
-- a window's rows on disk when they do not fit its memory limit, where ordered list
-- aggregates over a join cannot spill (10M applications ran out of 2GB that way).
-- The window's frame holds the applicant's applications of the 365 days before the
-- row's day and of the day itself (RANGE takes the day's peers); the day's last
-- application keeps it; its list is sorted by time, then amount.
with apps as (
    select
        applicant_id,
        application_ts,
        cast(application_ts as date) as application_day,
        loan_amount
    from {{ ref('stg_applications') }}
),

windowed as (
    select
        applicant_id,
        application_ts,
        list({'ts': application_ts, 'amount': loan_amount}) over (
            partition by applicant_id
            order by application_day
            range between interval 365 days preceding and current row
        ) as recent
    from apps
    qualify row_number() over (
        partition by applicant_id, application_day
        order by application_ts desc, loan_amount desc
    ) = 1
)

select
    applicant_id,
    application_ts as event_timestamp,
    list_transform(list_sort(recent), r -> epoch_us(r.ts) / 1e6) as recent_application_ts,
    list_transform(list_sort(recent), r -> r.amount) as recent_loan_amounts
from windowed

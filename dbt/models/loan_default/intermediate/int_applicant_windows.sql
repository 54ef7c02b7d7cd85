{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='application_day',
    on_schema_change='fail',
) }}
-- Each applicant's history as of each of their applications, over 30, 90 and 365
-- days, as of the START OF THE APPLICATION'S DAY (UTC): a window holds only the
-- applicant's applications on earlier days, [day - N days, day). That is what the
-- daily feature pipeline knows when a request comes in (a day's applications land
-- after the day), so the model server computes the same numbers at request time
-- from the online store (platform_assets/features/history.py): training and
-- serving share one definition, and a feature row never knows more than the
-- lender knew when the application came in.
--
-- Incremental by day: a run recomputes the days from the first day whose
-- applications changed since the last build (new days, a late or backfilled
-- partition), since windows reach forward from that day, and only for applicants
-- who applied on those days; unchanged history is read, not rewritten. When
-- nothing changed, nothing is recomputed. A day that vanished from the source
-- entirely needs `dbt build --full-refresh`.

with apps as (
    select
        application_id,
        applicant_id,
        application_ts,
        cast(application_ts as date) as application_day,
        loan_amount,
        hash(application_id, applicant_id, application_ts, loan_amount) as source_hash
    from {{ ref('stg_applications') }}
),

source_days as (
    select application_day, count(*) as n, bit_xor(source_hash) as h
    from apps
    group by application_day
),

{% if is_incremental() %}
built_days as (
    select application_day, count(*) as n, bit_xor(source_hash) as h
    from {{ this }}
    group by application_day
),

first_changed as (
    select min(coalesce(s.application_day, b.application_day)) as day
    from source_days as s
    full outer join built_days as b on s.application_day = b.application_day
    where s.n is distinct from b.n or s.h is distinct from b.h
),
{% else %}
first_changed as (
    select min(application_day) as day from source_days
),
{% endif %}

-- Applicants with an application on a recomputed day: only their windows change.
changed_applicants as (
    select distinct apps.applicant_id
    from apps, first_changed
    where apps.application_day >= first_changed.day
),

-- Their history; the windows of the recomputed days reach back at most 365 days.
history as (
    select apps.*
    from apps, first_changed
    where apps.application_ts >= first_changed.day - interval 365 days
      and apps.applicant_id in (select applicant_id from changed_applicants)
),

-- The last application before that horizon, for days since the last application.
earlier as (
    select apps.applicant_id, max(apps.application_ts) as last_ts
    from apps, first_changed
    where apps.application_ts < first_changed.day - interval 365 days
    group by apps.applicant_id
),

-- One row per applicant and day: the day's applications, loan total and last time.
daily as (
    select
        applicant_id,
        application_day,
        count(*) as n,
        sum(loan_amount) as loan_sum,
        max(application_ts) as last_ts
    from history
    group by applicant_id, application_day
),

-- Windows over earlier days only: [day - N days, day - 1 day] holds every application
-- at or after day - N days and before the day itself.
daily_windows as (
    select
        applicant_id,
        application_day,
        coalesce(sum(n) over w30, 0) as n30,
        coalesce(sum(n) over w90, 0) as n90,
        coalesce(sum(n) over w365, 0) as n365,
        coalesce(sum(loan_sum) over w30, 0.0) as sum30,
        coalesce(sum(loan_sum) over w90, 0.0) as sum90,
        coalesce(sum(loan_sum) over w365, 0.0) as sum365,
        max(last_ts) over w_all as last_prior_ts
    from daily
    window
        w30 as (partition by applicant_id order by application_day
                range between interval 30 days preceding and interval 1 day preceding),
        w90 as (partition by applicant_id order by application_day
                range between interval 90 days preceding and interval 1 day preceding),
        w365 as (partition by applicant_id order by application_day
                 range between interval 365 days preceding and interval 1 day preceding),
        w_all as (partition by applicant_id order by application_day
                  range between unbounded preceding and interval 1 day preceding)
),

windowed as (
    select
        history.application_id,
        history.applicant_id,
        history.application_ts,
        history.application_day,
        history.loan_amount,
        history.source_hash,
        daily_windows.n30,
        daily_windows.n90,
        daily_windows.n365,
        daily_windows.sum30,
        daily_windows.sum90,
        daily_windows.sum365,
        coalesce(daily_windows.last_prior_ts, earlier.last_ts) as last_prior_ts
    from history
    inner join daily_windows
        on history.applicant_id = daily_windows.applicant_id
        and history.application_day = daily_windows.application_day
    left join earlier on history.applicant_id = earlier.applicant_id
)

select
    application_id,
    applicant_id,
    application_ts,
    application_day,
    source_hash,
    cast(n30 as double) as prior_applications_30d,
    cast(n90 as double) as prior_applications_90d,
    cast(n365 as double) as prior_applications_365d,
    cast(sum30 as double) as prior_loan_sum_30d,
    cast(sum90 as double) as prior_loan_sum_90d,
    cast(sum365 as double) as prior_loan_sum_365d,
    case when n365 > 0 then sum365 / n365 else 0.0 end as avg_prior_loan_amount_365d,
    case when n365 > 0 then loan_amount / (sum365 / n365) else 0.0 end as loan_to_avg_prior_loan_365d,
    coalesce(date_diff('microsecond', last_prior_ts, application_ts) / 86400e6, -1.0) as days_since_last_application,
    -- When the row was computed: rows of days before the first changed day keep theirs.
    current_timestamp as _built_at
from windowed, first_changed
where windowed.application_day >= first_changed.day

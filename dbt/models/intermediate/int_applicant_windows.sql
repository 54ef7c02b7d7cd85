{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='application_day',
    on_schema_change='fail',
) }}
-- Each applicant's history as of each of their applications, over 30, 90 and 365
-- days. A window holds only applications strictly before the current one's time
-- (never itself, never the future, nor another made at the same instant), so a
-- feature row never knows more than the lender knew when the application came in.
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

windowed as (
    select
        history.application_id,
        history.applicant_id,
        history.application_ts,
        history.application_day,
        history.loan_amount,
        history.source_hash,
        count(*) over w30 as n30,
        count(*) over w90 as n90,
        count(*) over w365 as n365,
        coalesce(sum(history.loan_amount) over w30, 0.0) as sum30,
        coalesce(sum(history.loan_amount) over w90, 0.0) as sum90,
        coalesce(sum(history.loan_amount) over w365, 0.0) as sum365,
        coalesce(max(history.application_ts) over w_all, earlier.last_ts) as last_prior_ts
    from history
    left join earlier on history.applicant_id = earlier.applicant_id
    window
        w30 as (partition by history.applicant_id order by history.application_ts
                range between interval 30 days preceding and interval 1 microsecond preceding),
        w90 as (partition by history.applicant_id order by history.application_ts
                range between interval 90 days preceding and interval 1 microsecond preceding),
        w365 as (partition by history.applicant_id order by history.application_ts
                 range between interval 365 days preceding and interval 1 microsecond preceding),
        w_all as (partition by history.applicant_id order by history.application_ts
                  range between unbounded preceding and interval 1 microsecond preceding)
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

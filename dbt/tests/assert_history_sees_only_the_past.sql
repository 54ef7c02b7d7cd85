-- Recounts each applicant's 90-day history by brute force: only applications made
-- on earlier days (never the row itself, nor one the same day or later), in the
-- 90 days before the application's day (see int_applicant_windows).
-- Any row where the mart disagrees would leak the present or future into training.
-- The meta ref makes it an asset check of the mart (it reads two models).
{{ config(meta={'dagster': {'ref': {'name': 'fct_applicant_history'}}}) }}

with apps as (
    select application_id, applicant_id, application_ts, loan_amount
    from {{ ref('stg_applications') }}
),

recount as (
    select
        cur.application_id,
        count(prior.application_id) as n90,
        coalesce(sum(prior.loan_amount), 0.0) as sum90
    from apps as cur
    left join apps as prior
        on prior.applicant_id = cur.applicant_id
        and prior.application_ts < cast(cur.application_ts as date)
        and prior.application_ts >= cast(cur.application_ts as date) - interval 90 days
    group by cur.application_id
)

select history.application_id
from {{ ref('fct_applicant_history') }} as history
inner join recount on history.application_id = recount.application_id
where history.prior_applications_90d != recount.n90
   or abs(history.prior_loan_sum_90d - recount.sum90) > 1e-6 * greatest(1.0, recount.sum90)

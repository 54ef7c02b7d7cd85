-- A 90-day window never holds more applications than the 365-day window around it.
select application_id
from {{ ref('fct_applicant_history') }}
where prior_applications_90d > prior_applications_365d

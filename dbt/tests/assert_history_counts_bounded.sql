-- A shorter window never holds more applications, or a larger loan sum, than a longer one.
select application_id
from {{ ref('fct_applicant_history') }}
where prior_applications_30d > prior_applications_90d
   or prior_applications_90d > prior_applications_365d
   or prior_loan_sum_30d > prior_loan_sum_90d
   or prior_loan_sum_90d > prior_loan_sum_365d

{% test non_negative(model, column_name) %}
-- Counts, sums and ratios of amounts are never negative.
select {{ column_name }}
from {{ model }}
where {{ column_name }} < 0
{% endtest %}

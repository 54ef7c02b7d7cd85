"""Features: the dbt marts and the Feast feature store over them."""

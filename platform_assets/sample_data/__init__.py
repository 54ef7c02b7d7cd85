"""Seeded generator of the default domain's sample data (credit-risk loan applications)."""

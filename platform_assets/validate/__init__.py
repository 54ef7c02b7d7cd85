"""Validate: pandera rules split raw rows into validated and quarantined."""

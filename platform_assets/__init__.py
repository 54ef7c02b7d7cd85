"""ML platform assets."""

"""Monitor: the inference log and data drift against the training reference."""

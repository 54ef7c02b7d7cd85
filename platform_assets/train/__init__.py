"""Training: the PyTorch model, its MLflow tracking and registration."""

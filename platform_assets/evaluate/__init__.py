"""Evaluate: challenger against champion on one test set, with fairness slices and a gate."""

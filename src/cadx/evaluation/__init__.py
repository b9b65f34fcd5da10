"""Evaluation: the challenge metrics, plots."""

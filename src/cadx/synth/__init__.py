"""Synthetic data with known ground truth, written in the public datasets' formats."""

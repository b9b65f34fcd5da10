"""Metrics: pure numpy (plus scipy/scikit-image for lesion labelling), usable from training and evaluation."""

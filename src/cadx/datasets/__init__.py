"""Datasets: tiles read on the fly from slides, class-balanced sampling."""

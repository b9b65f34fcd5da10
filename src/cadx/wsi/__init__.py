"""Whole-slide pipelines: tissue detection on a slide, tiling to coordinate files, previews."""

"""CAMELYON16 (lymph-node metastases on whole slides): layout, training, prediction, evaluation, demo.

Modules: ``layout`` (the published folder layout), ``train`` (tile classifier), ``predict`` (slides
to heatmaps, detections and slide scores), ``slide_forest`` (slide-level random forest),
``evaluate`` (slide AUC and the official lesion FROC), ``demo`` (all of it on a synthetic cohort).
"""

"""ISIC 2019 dermoscopy: a second opinion on melanoma, nevus, basal cell carcinoma (or all eight classes).

``layout`` reads the published folder layout, ``train`` fine-tunes a classifier with a lesion-level
split and temperature scaling, ``predict`` writes the ISIC submission CSV.
"""

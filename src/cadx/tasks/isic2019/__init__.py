"""ISIC 2019 dermoscopy: layout, training, prediction, evaluation, report and demo."""

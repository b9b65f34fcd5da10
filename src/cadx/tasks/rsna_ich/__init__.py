"""RSNA 2019 intracranial haemorrhage (head CT): layout, training, prediction, evaluation, DICOM export, report and demo."""

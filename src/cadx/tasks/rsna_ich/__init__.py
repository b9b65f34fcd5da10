"""Head-CT intracranial haemorrhage (RSNA 2019): layout, training, prediction, evaluation."""

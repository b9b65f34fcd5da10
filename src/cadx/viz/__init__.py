"""Pictures: score grids and masks over images (overlay), ROC/FROC figures (plots). numpy and matplotlib, no io."""

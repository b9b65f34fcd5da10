"""One package per public dataset: folder layout, label rule, metrics, outputs and demo."""

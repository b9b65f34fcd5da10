"""Task packages: everything specific to one public dataset (layout, label rule, metrics, outputs)."""

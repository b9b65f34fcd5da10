"""Running work concurrently: bounded look-ahead over threads, and the cohort loop."""

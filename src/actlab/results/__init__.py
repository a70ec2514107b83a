"""The results store: one folder per run, written atomically."""

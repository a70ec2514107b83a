"""Ego4D-format annotations, the embedded egotoy data set, user splits and per-user streams."""

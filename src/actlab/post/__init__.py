"""Postprocessing: results (store, offline W&B, W&B API) -> aggregates, LaTeX tables, plots."""

"""Postprocessing: results (store, offline W&B, W&B API) -> aggregates, LaTeX tables, plots.

Two layers: `tables` (generic: seeds, units, mean +- SE, partial flags, directions, written tables)
and each family's own aggregation on top of it (`Family.aggregate`, e.g.
actlab.families.continual.aggregate); `report` and `cli` dispatch on the family.
"""

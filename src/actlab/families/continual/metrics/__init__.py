"""Metrics of the benchmark: online / whole-stream accuracy (balanced top-1 defined once, in
balanced.py), re-exposure forgetting, stream statistics and the decorrelated-sample mask."""
from actlab.families.continual.metrics.evaluate import score
from actlab.families.continual.metrics.forgetting import ReexposureForgetting, bin_by_log10_gap, pearson
from actlab.families.continual.metrics.balanced import balanced_accuracy, balanced_top1, running_balanced
from actlab.families.continual.metrics.decorrelated import decorrelated_mask
from actlab.families.continual.metrics.online import OnlineMetrics
from actlab.families.continual.metrics.stream_stats import stream_statistics

__all__ = ["OnlineMetrics", "ReexposureForgetting", "balanced_accuracy", "balanced_top1", "bin_by_log10_gap",
           "decorrelated_mask", "pearson", "running_balanced", "score", "stream_statistics"]

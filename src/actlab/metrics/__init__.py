"""Metrics of the benchmark: online / whole-stream accuracy, re-exposure forgetting, stream
statistics and the per-user gain aggregation."""
from actlab.metrics.evaluate import score
from actlab.metrics.forgetting import ReexposureTracker, bin_by_log10_gap, pearson
from actlab.metrics.gains import decorrelated_mask, mean_se
from actlab.metrics.online import OnlineMetrics
from actlab.metrics.stream_stats import stream_statistics

__all__ = ["OnlineMetrics", "ReexposureTracker", "bin_by_log10_gap", "decorrelated_mask", "mean_se",
           "pearson", "score", "stream_statistics"]

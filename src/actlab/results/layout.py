"""File names inside a run folder and the metric names in summary.json.

A run folder is `RunIdentity.folder(results_root)`. The engine writes these files; postprocess
reads them. `status.json` is written last, so a folder without `{"state": "completed"}` is not
a finished run, whatever else it holds.
"""
from __future__ import annotations

IDENTITY = "identity.json"        # RunIdentity.to_dict()
CONFIG = "config.yaml"            # the resolved Hydra config
STREAM = "stream.json"            # {"user", "sha256", "clips": [StreamClip.to_dict()], "stats": {...}}
SUMMARY = "summary.json"          # flat {metric_name: float}, names below
PREDICTIONS = "predictions.parquet"  # one row per stream sample (online predictions, losses)
FORGETTING = "forgetting.parquet"    # re-exposure forgetting events: label, gap, delta, ...
TRANSFER_DIR = "transfer"         # transfer/<stream_user>.json: final model on another stream
CHECKPOINT_DIR = "checkpoint"     # latest resumable state (engine-private format)
FINAL_MODEL = "final_model.pt"    # state_dict of the adapted model (input to transfer)
STATUS = "status.json"            # {"state": "running"|"completed"|"failed", ...}; written last

COMPLETED = "completed"

TASKS = ("action", "verb", "noun")

# summary.json metric names: f"online/{task}/{stat}" with stat in
#   top1 (micro running accuracy at the end), top5, balanced_top1 (macro over classes seen),
#   loss (mean CE of online predictions; action loss = verb + noun), n_samples;
# f"hindsight/{task}/{stat}" for the final model on the whole own stream (eval mode), when run;
# f"stream/{stat}" for stream statistics.


def metric(phase: str, task: str, stat: str) -> str:
    return f"{phase}/{task}/{stat}"

"""What a continual run records, named in one place: its artifacts (typed result files of the
results store, `actlab.results.store.Artifact`), its labels and its inputs.

A stream run (engine/stream_job.py) records
- labels  {VARIANT: the method name, REFERENCE_GROUP: group id of its frozen reference (a group
  shared by every experiment with the same setup, `ref-<hash>`: docs/families.md), "" for the
  reference itself};
- inputs  {STREAM: SHA-256 of its stream manifest, PRETRAINED: SHA-256 of the starting checkpoint};
- artifacts PREDICTIONS, FORGETTING, STREAM, FINAL_MODEL, and `transfer(j)` per evaluated stream j;
- summary.json metrics f"{phase}/{task}/{stat}": phase online | hindsight (final model, whole own
  stream, eval mode) | stream (statistics); task in TASKS; stat top1 (micro), top5, balanced_top1
  (macro over classes seen), loss (mean CE; action = verb + noun), n_samples.
Aggregation (aggregate.py) reads artifacts only through `RunStore(folder).read(name)`.
"""
from __future__ import annotations

TASKS = ("action", "verb", "noun")

# labels (identity.json "labels"; what the aggregation groups and pairs by)
VARIANT = "variant"                  # the method name, e.g. "replay"
REFERENCE_GROUP = "reference_group"  # the frozen reference's (shared) group id; "" for the reference itself

# inputs (identity.json "inputs": name -> SHA-256)
STREAM_INPUT = "stream"              # the user's stream manifest (= STREAM's "sha256")
PRETRAINED_INPUT = "pretrained"      # the checkpoint the run starts from

# artifacts (paths inside the run folder)
PREDICTIONS = "predictions.parquet"  # one row per stream sample: position, index, verb, noun, correct_<task>, ...
FORGETTING = "forgetting.parquet"    # re-exposure entries: metrics/forgetting.py ENTRY_COLUMNS
STREAM = "stream.json"               # {"user", "sha256", "clips": [StreamClip.to_dict()], "stats": {...}}
FINAL_MODEL = "final_model.pt"       # state_dict of the adapted model (the transfer job's input)
TRANSFER_DIR = "transfer"            # transfer/<stream user>.json


def transfer(stream_user: str) -> str:
    """transfer/<stream user>.json: {model_user, stream_user, stream_sha256, metrics} of this run's
    final model on another user's stream (metrics named f"transfer/{task}/{stat}")."""
    return f"{TRANSFER_DIR}/{stream_user}.json"

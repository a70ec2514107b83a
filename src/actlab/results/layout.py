"""File names every run folder has, whatever its family. A run folder is
`RunIdentity.folder(results_root)`; `status.json` is written last, so a folder without
`{"state": "completed"}` is not a finished run, whatever else it holds. A family's own result
files are artifacts (`actlab.results.store.Artifact`), named in the family's package.
"""
from __future__ import annotations

IDENTITY = "identity.json"        # RunIdentity.to_dict() + {"inputs": {name: sha256}, "labels": {key: str}}
CONFIG = "config.yaml"            # the resolved Hydra config
SUMMARY = "summary.json"          # flat {metric_name: float}
CURVES = "curves.parquet"         # per-epoch records of training jobs (actlab.train.loop)
CHECKPOINT_DIR = "checkpoint"     # latest resumable state (the job's own format)
LEASE = "lease.json"              # the one process writing this folder (actlab.results.lease)
STATUS = "status.json"            # {"state": "running"|"completed"|"failed", ...}; written last

COMPLETED = "completed"

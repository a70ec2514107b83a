"""The zstal family's pre-submit input check (`Family.check_inputs`): every file a job of this config
reads exists: annotations, feature folder, info file, the split's two class lists, the CLIP
checkpoint (and the descriptions with `target: description`). Existence only, nothing read.

The embedded set (`data.toy`) is written by the sweep's preparation step, after this check: its
files are not required here.
"""
from __future__ import annotations

from omegaconf import DictConfig

from actlab.families.zstal.data import split_path
from actlab.launch.preflight import missing


def check_inputs(cfg: DictConfig) -> list[str]:
    d = cfg.data
    if d.get("toy"):
        return []
    checks = [missing(cfg, "data.annotations", d.annotations), missing(cfg, "data.features", d.features, "folder"),
              missing(cfg, "data.info", d.info), missing(cfg, "data.clip.weights", d.clip.weights)]
    if cfg.get("target") == "description":
        checks.append(missing(cfg, "data.descriptions", d.descriptions))
    ids = {int(k) for k in cfg.get("split_ids") or []} | ({int(cfg.split_id)} if cfg.get("split_id") is not None else set())
    for k in sorted(ids):
        for part in ("train", "test"):
            checks.append(missing(cfg, "data.splits", split_path(d.splits, int(cfg.split_ratio), d.split_dir, part, int(k))))
    return [c for c in checks if c]

"""What `make grid` checks before anything is written or submitted: the files an ak job reads.
Cheap: existence only. A config whose preparation step generates the data (`data.generate`) is
not checked for the files that step writes."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from actlab.launch.preflight import missing

ANNOTATIONS = ("annotation/train.csv", "annotation/val.csv", "annotation/df_action.xlsx")


def check_ak(cfg: DictConfig) -> list[str]:
    if cfg.data.get("generate"):
        return []
    root = Path(cfg.data.root)
    found = [missing(cfg, "data.root", root / rel) for rel in ANNOTATIONS]
    found.append(missing(cfg, "data.root", root / "dataset" / "video", "folder"))
    found.append(missing(cfg, "clip.weights", cfg.clip.weights))
    if cfg.clip.get("config_file"):
        found.append(missing(cfg, "clip.config_file", cfg.clip.config_file))
    return [p for p in found if p]

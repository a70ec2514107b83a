"""What `make grid` checks before anything is written or submitted (Family.check_inputs): the FPHA
tree and its split file exist. Cheap: existence only. An experiment that writes handtoy in its
preparation step (`data.generate`) has nothing to check yet."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from actlab.families.hand.fpha import POSE_DIR, SPLIT_FILE, VIDEO_DIR
from actlab.launch.preflight import missing


def check_hand(cfg: DictConfig) -> list[str]:
    if cfg.data.generate:
        return []
    root = Path(str(cfg.data.root))
    if not root.is_dir():
        return [missing(cfg, "data.root", root, "folder")]
    problems = [missing(cfg, "data.root", root / SPLIT_FILE, "file"),
                missing(cfg, "data.root", root / VIDEO_DIR, "folder"),
                missing(cfg, "data.root", root / POSE_DIR, "folder")]
    return [p for p in problems if p]

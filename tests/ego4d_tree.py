"""A minimal real-format Ego4D tree for launcher tests (a few tens of KB): what
configs/paths/bluecrystal.yaml points at through ACTLAB_EGO4D, ACTLAB_SCRATCH and
ACTLAB_EGO4D_CHECKPOINT.

  <root>/ego4d/ego4d.json                        video metadata (video_uid, origin_video_id, fb_participant_id)
  <root>/ego4d/v1/annotations/fho_lta_{train,val}.json
  <root>/ego4d/v1/clips/                         (empty: the launcher checks the folder, the jobs the files)
  <root>/scratch/splits/{pretrain,train,test}.json   written by the project's split code
  <root>/slowfast.ckpt                           Lightning checkpoint in SlowFast-library naming

Every train and test user of configs/continual/data/ego4d.yaml has one clip of 60 s (the 50-user
pool), and two pretrain users one clip of 10 s each, so the paper split puts them where the
experiments' `users: train` / `users: test` expect them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
PRETRAIN_USERS = ("9001", "9002")
FEATURE_DIM = 16   # the real head input is 2304 wide; the launcher only reads the class counts


def split_config():
    return OmegaConf.load(REPO / "configs" / "continual" / "data" / "ego4d.yaml").split


def write_lightning_checkpoint(path: Path, num_verbs: int, num_nouns: int) -> Path:
    """A checkpoint laid out like the released ones: Lightning's `state_dict` with the module's
    `model.` prefix, SlowFast-library names, projections 0 = verbs and 1 = nouns (upstream's
    NUM_CLASSES [115, 478]), plus Lightning's non-tensor entries."""
    state = {"model.s1.pathway0_stem.conv.weight": torch.zeros(2, 3, 1, 1, 1),
             "model.head.projections.0.weight": torch.zeros(num_verbs, FEATURE_DIM),
             "model.head.projections.0.bias": torch.zeros(num_verbs),
             "model.head.projections.1.weight": torch.zeros(num_nouns, FEATURE_DIM),
             "model.head.projections.1.bias": torch.zeros(num_nouns)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 45, "global_step": 1000, "pytorch-lightning_version": "1.6.0",
                "hyper_parameters": {"cfg": {"MODEL": {"NUM_CLASSES": [num_verbs, num_nouns]}}}}, path)
    return path


def _rows(user: str, minutes_sec: float) -> list[dict]:
    clip, video = f"clip-{user}", f"video-{user}"
    return [{"clip_uid": clip, "video_uid": video, "clip_parent_start_sec": 0.0,
             "clip_parent_end_sec": minutes_sec, "action_idx": i,
             "action_clip_start_sec": 4.0 * i, "action_clip_end_sec": 4.0 * i + 3.0,
             "verb": f"verb{i}", "verb_label": i, "noun": f"noun{i}", "noun_label": 10 + i} for i in range(2)]


def write_tree(root: Path) -> dict[str, Path]:
    """The tree above; returns the environment variables of configs/paths/bluecrystal.yaml."""
    from actlab.families.continual.data.ego4d import load_annotations
    from actlab.families.continual.data.split import make_splits, write_splits

    s = split_config()
    pool = [str(u) for u in [*s.train_users, *s.test_users]]
    users = [(u, 60.0) for u in pool] + [(u, 10.0) for u in PRETRAIN_USERS]
    ego4d, v1 = root / "ego4d", root / "ego4d" / "v1"
    (v1 / "annotations").mkdir(parents=True)
    (v1 / "clips").mkdir()
    (ego4d / "ego4d.json").write_text(json.dumps({"videos": [
        {"video_uid": f"video-{u}", "origin_video_id": f"origin-{u}", "fb_participant_id": int(u)}
        for u, _ in users]}))
    rows = [r for u, sec in users for r in _rows(u, sec)]
    for name, part in (("train", rows[0::2]), ("val", rows[1::2])):
        (v1 / "annotations" / f"fho_lta_{name}.json").write_text(json.dumps({"clips": part}))
    splits = make_splits(load_annotations(v1, metadata=ego4d / "ego4d.json"), criterion=s.criterion,
                         pool_size=s.pool_size, train_users=list(s.train_users), test_users=list(s.test_users))
    write_splits(splits, root / "scratch" / "splits")
    checkpoint = write_lightning_checkpoint(root / "slowfast.ckpt", 115, 478)
    return {"ACTLAB_EGO4D": v1, "ACTLAB_SCRATCH": root / "scratch", "ACTLAB_EGO4D_CHECKPOINT": checkpoint}

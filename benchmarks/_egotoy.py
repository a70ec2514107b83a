"""The benchmarks' egotoy set: data, splits and a model checkpoint under benchmarks/.cache.

Generated once (deterministic, seed 0, scale 1) and reused by every benchmark; delete the folder
to regenerate. The checkpoint holds seeded random weights: the benchmarks time the engine and
compare implementations on the same weights, they do not need a good model.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
DATA, SPLITS = CACHE / "egotoy", CACHE / "splits"
MODEL_CFG = REPO / "configs" / "continual" / "model" / "egotoy_small.yaml"
TRAIN_USERS = ("68", "265", "324")
# One intra-op thread by default: a stream task asks Slurm for one CPU (configs/resources/default.yaml),
# and on a shared 2-core machine two OpenMP threads of one process stall each other whenever the
# other core is busy (measured: fwd+bwd 54 ms with 1 thread, 1-4 s with 2 under load).
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)


def data_cfg(max_clips: int | None = None) -> DictConfig:
    """configs/continual/data/egotoy.yaml pointing at the benchmark cache (data generated on first use)."""
    ensure()
    return _data_cfg(max_clips)


def _data_cfg(max_clips: int | None = None) -> DictConfig:
    cfg = OmegaConf.create({"paths": {"data": str(DATA), "splits": str(SPLITS)},
                            "data": OmegaConf.load(REPO / "configs" / "continual" / "data" / "egotoy.yaml")})
    OmegaConf.resolve(cfg)
    cfg.data.max_clips = max_clips
    return cfg.data


def checkpoint_path() -> Path:
    """Keyed by the model config's text, so a changed architecture gets its own weights."""
    digest = hashlib.sha256(MODEL_CFG.read_bytes()).hexdigest()[:12]
    return CACHE / f"egotoy_small_{digest}_seed0.pt"


def model_cfg() -> DictConfig:
    cfg = OmegaConf.create({"data": _data_cfg(), "model": OmegaConf.load(MODEL_CFG)})
    OmegaConf.resolve(cfg)
    return cfg.model


def new_model() -> torch.nn.Module:
    """egotoy_small with the cached checkpoint's weights (the same initial weights every call)."""
    from actlab.families.continual.models.weights import load_checkpoint

    ensure()
    model = instantiate(model_cfg())
    load_checkpoint(model, checkpoint_path(), strict=True)
    return model


def ensure() -> None:
    from actlab.families.continual.data.ego4d import load_annotations
    from actlab.families.continual.data.egotoy import generate
    from actlab.families.continual.data.split import make_splits, write_splits
    from actlab.families.continual.models.weights import save_checkpoint

    if not (DATA / "taxonomy.json").exists():
        print(f"benchmarks: generating egotoy under {DATA} (once)")
        generate(DATA, seed=0, scale=1.0)
    if not (SPLITS / "train.json").exists():
        cfg = _data_cfg()
        s = cfg.split
        splits = make_splits(load_annotations(cfg.root), criterion=s.criterion, seed=s.seed,
                             pool_size=s.pool_size, train_users=list(s.train_users),
                             test_users=list(s.test_users), n_train=s.n_train, n_test=s.n_test)
        write_splits(splits, SPLITS)
    if not checkpoint_path().exists():
        torch.manual_seed(0)
        save_checkpoint(instantiate(model_cfg()), checkpoint_path(), {"note": "seeded random weights for benchmarks"})


def open_stream(user: str = TRAIN_USERS[0], max_clips: int | None = None):
    from actlab.families.continual.data.user_streams import open_user_stream

    return open_user_stream(data_cfg(max_clips), user)

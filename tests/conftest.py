"""Shared test helpers.

`require(condition, why)` skips a test whose root-only part (Slurm, pdflatex, ...) is missing, on
a laptop; with ACTLAB_STRICT=1 (set by .ci/run) the same condition fails the test instead, so CI
can never go green by skipping.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

STRICT = os.environ.get("ACTLAB_STRICT") == "1"


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI (ACTLAB_STRICT=1): {why}")
    pytest.skip(why)


# -- shared egotoy fixtures ---------------------------------------------------------------------
# Generated once per test session (the generator is deterministic), so every test that needs
# real mp4s, splits or streams reads the same small data set.
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def egotoy_root(tmp_path_factory) -> Path:
    from actlab.families.continual.data.egotoy import generate

    return generate(tmp_path_factory.mktemp("egotoy"), seed=0, scale=1.0)


@pytest.fixture(scope="session")
def data_cfg(egotoy_root, tmp_path_factory):
    """configs/continual/data/egotoy.yaml with its paths pointing at the session's data set and splits."""
    from omegaconf import OmegaConf

    splits = tmp_path_factory.mktemp("splits")
    cfg = OmegaConf.create({"paths": {"data": str(egotoy_root), "splits": str(splits)},
                            "data": OmegaConf.load(REPO / "configs" / "continual" / "data" / "egotoy.yaml")})
    OmegaConf.resolve(cfg)
    return cfg.data


@pytest.fixture(scope="session")
def egotoy_splits(data_cfg) -> Path:
    from actlab.families.continual.data.ego4d import load_annotations
    from actlab.families.continual.data.split import make_splits, write_splits

    s = data_cfg.split
    splits = make_splits(load_annotations(data_cfg.root), criterion=s.criterion, seed=s.seed,
                         pool_size=s.pool_size, train_users=list(s.train_users),
                         test_users=list(s.test_users), n_train=s.n_train, n_test=s.n_test)
    write_splits(splits, data_cfg.splits_dir)
    return Path(data_cfg.splits_dir)


def compose(config_name: str, overrides: list[str]):
    """A config of configs/continual/<config_name>.yaml as the jobs see it (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "configs" / "continual"), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


@pytest.fixture(scope="session")
def pretrained(egotoy_splits, data_cfg, tmp_path_factory) -> Path:
    """An egotoy_small checkpoint (random weights: the engine tests need a model, not a good one)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from actlab.families.continual.models.weights import save_checkpoint

    torch.manual_seed(0)
    cfg = OmegaConf.create({"data": data_cfg, "model": OmegaConf.load(REPO / "configs/continual/model/egotoy_small.yaml")})
    path = tmp_path_factory.mktemp("checkpoints") / "egotoy_pretrained.pt"
    save_checkpoint(instantiate(cfg.model), path, {"note": "random weights for tests"})
    return path


@pytest.fixture
def stream_overrides(tmp_path, data_cfg, egotoy_splits, pretrained) -> list[str]:
    """Overrides that point a stream/transfer job at the session's egotoy data in tmp_path."""
    return [f"paths.root={tmp_path}", f"paths.data={data_cfg.root}", f"paths.splits={egotoy_splits}",
            f"paths.pretrained={pretrained}"]

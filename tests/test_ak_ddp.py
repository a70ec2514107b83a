"""The ak job as 2 data-parallel ranks (docs/ak.md, "Several ranks"): aktoy through the launcher with
`resources.tasks_per_node=2`, torchrun in the local executor, gloo on the CPU."""
from __future__ import annotations

import json

import pytest
from ddp_grid import mark, marker_override, per_rank, run_two_ranks, summaries


def marked_proj(visual, marker: str):
    """clip_proj whose trainable part (`ln_post`, run by every training step on cached features)
    marks each training forward."""
    from actlab.families.ak.model import ProjOnly

    encoder = ProjOnly(visual)
    mark(encoder.visual.ln_post, marker)
    return encoder


@pytest.mark.slow
def test_two_torchrun_ranks_train_one_aktoy_run(tmp_path):
    """A doubling batch schedule (batch 8 in epoch 1, 16 in epochs 2-3: two phases) with early
    stopping on a held-out part of train (48 training clips: 6 steps, then 3 per epoch), each rank
    half of every global batch. At lr 0 the held-out mAP cannot improve after epoch 1, so patience 1
    stops training after the first step of epoch 3 on both ranks (each rank's own scores decide);
    rank 0 alone writes the one completed run, which tests epoch 1's weights."""
    marker = tmp_path / "forwards.txt"
    out = run_two_ranks(tmp_path, "ak", "aktoy_ddp",
                        "seeds: [0]\nepochs: 3\naugment: false\ncache_features: true\n"
                        "val_fraction: 0.2\npatience: 1\noptimizer: {lr: 0.0}\n"
                        "train: {batch_schedule: doubling, batch_start: 8, batch_max: 16}\n",
                        ["data.scale=0.05", "random_draws=2", "model._target_=test_ak_ddp.marked_proj",
                         marker_override("model.marker", marker)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = per_rank(marker)
    assert ranks[0] == ranks[1] == [4] * 6 + [8] * 3 + [8], ranks
    (summary,) = summaries(tmp_path)
    values = json.loads(summary.read_text())
    assert values["train/clips"] == 48 and values["val/best_epoch"] == 1 and "test/map" in values
    details = json.loads((summary.parent / "details.json").read_text())
    assert details["validation"]["stopped_after_epoch"] == 2

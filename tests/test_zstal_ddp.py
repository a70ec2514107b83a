"""The zstal job as 2 data-parallel ranks (docs/zstal.md, "Several ranks"): zstaltoy through the
launcher with `resources.tasks_per_node=2`, torchrun in the local executor, gloo on the CPU."""
from __future__ import annotations

import json

import pytest
from ddp_grid import mark, marker_override, per_rank, run_two_ranks, summaries


def marked_detr(in_dim: int, marker: str, **kw):
    """The proposal detector, marking each training forward."""
    from actlab.families.zstal.detector import ProposalDETR

    return mark(ProposalDETR(in_dim, **kw), marker)


@pytest.mark.slow
def test_two_torchrun_ranks_train_one_zstaltoy_run(tmp_path):
    """Both ranks train on their half of every global batch of 8 windows (an epoch's last may be short),
    the same steps; rank 0 alone writes the one completed, scored run."""
    marker = tmp_path / "forwards.txt"
    out = run_two_ranks(tmp_path, "zstal", "zstaltoy_ddp",
                        "defaults:\n  - override /data: zstaltoy_thumos\nseeds: [0]\nsplit_ids: [0]\n"
                        "split_ratio: 75\ntoy_data: true\n"
                        "model: {d_model: 16, heads: 2, dec_layers: 2, ffn: 32, dropout: 0.0}\n"
                        "train: {batch_size: 8}\n",
                        ["data.epochs=2", "data.max_videos=5", "model._target_=test_zstal_ddp.marked_detr",
                         marker_override("model.marker", marker)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = per_rank(marker)
    steps = list(zip(ranks[0], ranks[1]))
    assert len(ranks[0]) == len(ranks[1]) >= 2, ranks
    assert all(abs(a - b) <= 1 and a > 0 and b > 0 for a, b in steps), ranks
    half = len(steps) // 2       # 2 epochs of the same windows: full global batches but each epoch's last
    assert steps[:half] == steps[half:] and all(a + b == 8 for a, b in steps[:half - 1]), ranks
    (summary,) = summaries(tmp_path)
    values = json.loads(summary.read_text())
    assert values["train/epochs"] == 2 and "test/average_map" in values

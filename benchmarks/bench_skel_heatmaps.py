"""The skel family's input pipeline: vectorised joint heatmaps against pyskl's per-joint loop
(target >= 3x), and the training loader's throughput (2 workers) against what a toy training step
consumes (report).

Heatmaps: a full-size PoseC3D clip, 2 persons x 48 frames x 17 joints at 56 x 56.
Loader: clips/s of the ntutoy training set (clip 16 at 32 x 32) with 2 workers, against the clips/s
one toy training step (batch 8, SlowOnly base 8) takes for the ITC variant.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Record, interleaved, median
from torch.utils.data import DataLoader

from actlab.families.skel import ntutoy
from actlab.families.skel.data import TrainClips, load_split
from actlab.families.skel.pipeline import PipelineConfig, heatmaps, heatmaps_loop


def main() -> None:
    torch.set_num_threads(1)       # as a job runs (threads: 1 per local task)
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 56, (2, 48, 17, 2)).astype(np.float32)
    score = rng.uniform(0.3, 1, (2, 48, 17)).astype(np.float32)
    times = interleaved({"vectorised": lambda: heatmaps(kp, score, (56, 56)),
                         "loop": lambda: heatmaps_loop(kp, score, (56, 56))}, repeats=5)
    fig = {"heatmaps_speedup_vectorised_over_loop": median(times["loop"]) / median(times["vectorised"])}
    raw = {"heatmaps_s": {k: median(v) for k, v in times.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        path = ntutoy.generate(Path(tmp), seed=0)
        split = load_split(path, "xsub_train", Path(tmp) / ntutoy.LABELS)
        cfg = PipelineConfig(clip_len=16, short_side=36, train_size=32, test_size=32, num_test_clips=2)
        ds = TrainClips(split.samples, cfg, seed=0)
        t0 = time.perf_counter()
        n = 0
        for batch in DataLoader(ds, batch_size=8, num_workers=2):
            n += len(batch["label"])
        loader_rate = n / (time.perf_counter() - t0)
        step_rate = _toy_step_rate(ds)
    fig |= {"loader_clips_per_s_2_workers": loader_rate, "toy_itc_step_clips_per_s": step_rate,
            "loader_over_step_consumption": loader_rate / step_rate}
    Record("skel_heatmaps", fig, raw, notes=["target: heatmaps_speedup_vectorised_over_loop >= 3",
                                             "loader_over_step_consumption > 1: the loader keeps up"]).write()


def _toy_step_rate(ds: TrainClips) -> float:
    from actlab.families.skel.model import ModelConfig, SkelTextModel
    from actlab.families.skel.text import TextTower
    from actlab.families.skel.train import step_loss

    torch.manual_seed(0)
    model = SkelTextModel(ModelConfig(loss="itc", base=8, blocks=(1, 1, 1), hidden=64, embed=32),
                          TextTower(width=32, layers=2, heads=2, context_length=16, embed_dim=32),
                          [str(i) for i in range(10)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=True)))
    g = torch.Generator().manual_seed(0)

    def step():
        opt.zero_grad()
        loss, _ = step_loss(model, batch, g, 10, 0.4)
        loss.backward()
        opt.step()
    t = interleaved({"step": step}, repeats=5)["step"]
    return 8 / median(t)


if __name__ == "__main__":
    main()

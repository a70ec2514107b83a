"""Hand family: HPE input for one epoch from the crop cache against PNG decode + crop, and how the
cached loader's throughput compares with what an HPE training step consumes.

On a small handtoy (2 actions, ~230 frames, 128 px crops as the FPHA config): (1) an epoch of
training batches read from the float16 memmap cache (CropDataset through a DataLoader, as
`fit` reads it) against decoding every depth PNG and cropping it (what a cacheless loader does
each epoch; the source went from ~30 min to ~1 s a pass); (2) frames/s of the cached loader against
frames/s of one optimizer step of the toy and the full pose network (CPU, one thread). Target:
cache / decode >= 10x.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import Record, interleaved, median

from actlab.families.hand import handtoy
from actlab.families.hand.data import crop_all, frame_table, protocol_split
from actlab.families.hand.models import PoseNet
from actlab.families.hand.pca import PCAPrior
from actlab.families.hand.train import CropDataset

CACHE = Path(__file__).resolve().parent / ".cache" / "hand"
SIZE, CUBE, BATCH = 128, 200.0, 64


def main() -> None:
    torch.set_num_threads(1)
    root = handtoy.generate(CACHE / "handtoy", seed=0, actions=2, workers=1)
    train, test = protocol_split(root, "fpha_1to1")
    seqs = train + test
    table = frame_table(root, "fpha_1to1", seqs, CUBE, SIZE, CACHE / "crops")
    frames = np.arange(len(table.joints))
    targets = np.zeros((len(frames), 30), np.float32)
    dataset = CropDataset(table, frames, targets)

    def cached_epoch() -> None:
        for _ in DataLoader(dataset, batch_size=BATCH, shuffle=True):
            pass

    def decode_epoch() -> None:
        out = np.zeros((len(frames), SIZE, SIZE), np.float16)
        crop_all(root, seqs, table.joints, table.starts, CUBE, SIZE, out)

    times = interleaved({"cache": cached_epoch, "decode": decode_epoch}, repeats=3)
    cache_s, decode_s = median(times["cache"]), median(times["decode"])

    prior = PCAPrior.fit(np.random.default_rng(0).normal(size=(200, 63)), 30)
    nets = {"toy": (PoseNet(prior.decoder(), widths=(16, 32, 64, 64), blocks=1, stem=8, fc=256, input_size=64), 64, 64),
            "full": (PoseNet(prior.decoder()), 128, 16)}
    step_fps = {}
    for name, (net, size, batch) in nets.items():
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad])
        x, z = torch.randn(batch, 1, size, size), torch.randn(batch, 30)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), z).backward()
            opt.step()
        step_fps[name] = batch / median(interleaved({"step": step}, repeats=3)["step"])
    loader_fps = len(frames) / cache_s
    Record("hand_input", figures={
        "cache_vs_decode_epoch_speedup": decode_s / cache_s,
        "cached_loader_frames_per_s": loader_fps,
        "decode_crop_frames_per_s": len(frames) / decode_s,
        "toy_hpe_step_frames_per_s": step_fps["toy"],
        "full_hpe_step_frames_per_s": step_fps["full"],
        "cached_loader_over_full_step_consumption": loader_fps / step_fps["full"],
    }, raw={"frames": int(len(frames)), "cache_epoch_s": cache_s, "decode_epoch_s": decode_s, "times": times},
        notes=["target cache/decode >= 10x; a loader/step ratio > 1 means one loader process feeds the "
               "network (CPU, one thread; a GPU step consumes far more)"]).write()


if __name__ == "__main__":
    main()

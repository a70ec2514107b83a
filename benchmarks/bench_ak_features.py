"""clip_proj on the embedded set (aktoy): training on cached frozen per-frame features against
the full path (decode every clip + the frozen image trunk in every step), no augmentation.

Reported: the largest logit difference of the two paths on the test split (must be <= 1e-5), the
epoch time ratio full / cached (target >= 5), and the one-time cost of building the cache.
The set: data/aktoy when complete (`make run EXP=aktoy_main` writes it), else a quarter-size one
generated into a temporary folder.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from common import Record, interleaved, median
from omegaconf import OmegaConf

from actlab.families.ak import aktoy
from actlab.families.ak import data as ak_data
from actlab.families.ak.job import FeatureDataset, cosines, predict
from actlab.families.ak.losses import BCELoss
from actlab.families.ak.model import ProjOnly, VideoTextClassifier, load_clip, prompts, text_embeddings
from actlab.families.ak.video import ClipDataset, VideoSpec
from actlab.train.loop import LoopConfig, fit

REPO = Path(__file__).resolve().parents[1]


def one_epoch(model, dataset, spec, criterion) -> None:
    def loss_fn(model, batch, generator):
        return criterion(cosines(model, batch, spec, None), batch["labels"], model, 0), {}
    fit(model, dataset, config=LoopConfig(epochs=1, batch_size=32), loss_fn=loss_fn,
        make_optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))


def main() -> None:
    torch.set_num_threads(1)
    tmp = None
    root = REPO / "data" / "aktoy"
    if not aktoy.is_complete(root, 0, 1.0):
        tmp = tempfile.TemporaryDirectory()
        root = aktoy.generate(tmp.name, seed=0, scale=0.25)
    data = ak_data.load(OmegaConf.create({"root": str(root), "num_classes": 140, "on_missing": "error",
                                          "metadata": None}))
    clip, tokenizer = load_clip(aktoy.CLIP_NAME, root / "clip" / "ak_tiny.pt", root / "clip" / "ak_tiny.json")
    text = text_embeddings(clip, tokenizer, prompts("video", data.table.action, data.table.segment), "bench")
    torch.manual_seed(0)
    model = VideoTextClassifier(ProjOnly(clip.visual), text, float(clip.logit_scale.detach()))
    spec = VideoSpec(frames=8, candidates=2, decode_size=40, image_size=32)
    criterion = BCELoss(data.table.count, 1)
    full_train = ClipDataset(data.clips["train"], data.labels["train"], data.video_dir, spec, train=False)
    full_test = ClipDataset(data.clips["test"], data.labels["test"], data.video_dir, spec, train=False)
    t0 = time.perf_counter()
    cached_train = FeatureDataset(full_train, model, 64)
    build_s = time.perf_counter() - t0
    cached_test = FeatureDataset(full_test, model, 64)
    diff = float(abs(predict(model, full_test, spec, 64) - predict(model, cached_test, spec, 64)).max())
    times = interleaved({"full": lambda: one_epoch(model, full_train, spec, criterion),
                         "cached": lambda: one_epoch(model, cached_train, spec, criterion)}, repeats=3, warmup=0)
    ratio = median(times["full"]) / median(times["cached"])
    Record("ak_features", figures={"max_abs_logit_difference": diff, "epoch_speedup_cached_vs_full": ratio,
                                   "meets_5x": bool(ratio >= 5), "identical_1e-5": bool(diff <= 1e-5)},
           raw={"full_epoch_s": median(times["full"]), "cached_epoch_s": median(times["cached"]),
                "cache_build_s": build_s, "train_clips": len(full_train), "test_clips": len(full_test),
                "data": str(root)}).write()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""Decoding (pytorchvideo EncodedVideo, PyAV) against what the model consumes.

One train user's stream through `ClipDataset` (decode + subsample + normalise) with a DataLoader
of batch 4 and 0 / 1 / 2 workers, against the model's consumption rate: clips/s of the bare
train-mode forward (online predictions and loss) + SGD step on pre-decoded batches
(bench_stream_loop's limit). Then the stream loop end to end without the clip cache
(`cache_clips: false`) at 0 and 2 workers, against the cached loop: how much of the decoding the
workers hide behind compute.
Figures: decode clips/s per worker count, decode / consume, uncached loop / cached loop.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch.utils.data import DataLoader, default_collate

import _egotoy
from bench_stream_loop import BATCH, finetune_steps, limit_run, method
from common import Record, interleaved, median

from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.metrics.online import OnlineMetrics

WORKERS = (0, 1, 2)


def decode_all(dataset, workers: int) -> None:
    for _ in DataLoader(dataset, batch_size=BATCH, num_workers=workers):
        pass


def loop(init, dataset, cfg, workers: int) -> None:
    run_stream(copy.deepcopy(init), method("finetune"), dataset, metrics=OnlineMetrics(cfg.num_verbs, cfg.num_nouns),
               seed=0, batch_size=BATCH, num_workers=workers)


def main() -> None:
    warnings.filterwarnings("ignore")
    stream = _egotoy.open_stream()
    cfg = _egotoy.data_cfg()
    raw = stream.dataset
    n = len(raw)
    cached = InMemoryClips(raw)
    for i in range(n):
        cached[i]
    batches = [default_collate([cached[i] for i in range(s, min(s + BATCH, n))]) for s in range(0, n, BATCH)]
    steps = finetune_steps(batches)
    init = _egotoy.new_model()
    fns = {f"decode_w{w}": (lambda w=w: decode_all(raw, w)) for w in WORKERS}
    fns["consume"] = lambda: limit_run("finetune", init, steps)
    fns["loop_cached_w0"] = lambda: loop(init, cached, cfg, 0)
    fns["loop_uncached_w0"] = lambda: loop(init, raw, cfg, 0)
    fns["loop_uncached_w2"] = lambda: loop(init, raw, cfg, 2)
    times = interleaved(fns, repeats=2, warmup=1)
    med = {k: median(v) for k, v in times.items()}
    fig = {f"decode_clips_per_s_workers_{w}": n / med[f"decode_w{w}"] for w in WORKERS}
    fig["model_consumes_clips_per_s"] = n / med["consume"]
    for w in WORKERS:
        fig[f"decode_over_consume_workers_{w}"] = med["consume"] / med[f"decode_w{w}"]
    for k in ("uncached_w0", "uncached_w2"):
        fig[f"loop_{k}_over_cached"] = med["loop_cached_w0"] / med[f"loop_{k}"]
    notes = [f"user {stream.user}: {n} clips of 8 x 64 x 64 (egotoy mp4, 15 fps), batch {BATCH}, "
             f"torch threads {torch.get_num_threads()}; decode = DataLoader over ClipDataset (default collate)",
             "loop_*_over_cached: 1.0 = decoding fully hidden (or cached); the data config's default is "
             "cache_clips: true, num_workers: 0 (each clip decoded once, in the main process)"]
    Record("decode", figures=fig, raw={"median_s": med, "times_s": times, "n_clips": n}, notes=notes).write()


if __name__ == "__main__":
    main()

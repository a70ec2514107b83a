"""The online protocol over one stream: predict, then update, then (optionally) look back.

Per batch B_t of `batch_size` consecutive samples (in `method.order`, the stream order except
for i.i.d. finetuning):
  1. online predictions on B_t with the current model, before any update on B_t, scored by
     `OnlineMetrics`. `online_forward` picks the forward mode: "train" (default, as upstream:
     dropout active, batch-norm uses the batch statistics; for a method that learns, the
     predictions are the B_t rows of the first inner iteration's forward, so the running
     statistics move once per batch) or "eval" (a separate no-grad forward with the running
     statistics, no dropout);
  2. `method.inner_loop_iters` optimizer steps on `method.train_forward(...).loss` (methods
     without trainable parameters get no optimizer and no steps), then `method.observe(B_t)`;
  3. every `past_eval_every` batches (forgetting needs 1): past evaluation for re-exposure
     forgetting (engine/past_eval.py) with the online logits of B_t.
Device and precision (docs/gpu.md): the model moves to `device` once (None: where it is), every
batch and every fetched past batch as it arrives (pinned, non-blocking on CUDA); forwards run
under autocast for `precision` bf16/fp16, and fp16's GradScaler is part of the checkpoint. The
per-batch host read is the online metrics' (they record every sample's prediction).
State is checkpointed at batch boundaries every `checkpoint_every` batches and when
`should_stop()` becomes true (then the loop returns `interrupted=True`). A loop started with a
checkpoint present continues from it and gives the same records as an uninterrupted run.
Fixed backbone (`features`, engine/feature_cache.py): when no forward of the run can change the
backbone (`fixed_backbone`), every backbone forward (online, update, past evaluation) takes its
chunk's features from `features` and only the heads run; the loop then reads labels, not video.
A method that never forwards the network (label window) without past evaluation reads no video.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from actlab.families.continual.engine.feature_cache import BackboneFeatures, LabelsOnly, fixed_backbone
from actlab.families.continual.engine.past_eval import evaluate_past
from actlab import device as compute, preemption, resumable as checkpoint
from actlab.families.continual.methods.base import Batch, Forward, Method

FORWARD_MODES = ("train", "eval")


@dataclass
class LoopResult:
    interrupted: bool
    records: pd.DataFrame                 # one row per processed sample, in processing order
    summary: dict[str, float]             # OnlineMetrics.compute()
    forgetting: pd.DataFrame              # re-exposure events (empty without past evaluation)
    batches_done: int = 0


def fetcher(dataset: Dataset, device: torch.device | None = None) -> Callable[[list[int]], Batch]:
    """Past samples by stream index (replay, past evaluation), on `device` when given."""
    if device is None:
        return lambda indices: default_collate([dataset[int(i)] for i in indices])
    return lambda indices: compute.to_device(_tensor_labels(default_collate([dataset[int(i)] for i in indices])),
                                             device)


def _tensor_labels(batch: Batch) -> Batch:
    return batch | {k: torch.as_tensor(batch[k]) for k in ("verb", "noun", "index")}


def run_stream(model: nn.Module, method: Method, dataset: Dataset, *, metrics: Any, seed: int = 0,
               batch_size: int = 4, online_forward: str = "train", checkpoint_dir: Path | None = None,
               checkpoint_every: int = 0, past_eval_every: int = 0,
               tracker: Any = None, num_workers: int = 0,
               should_stop: Callable[[int], bool] | None = None,
               on_batch: Callable[[int, dict[str, float]], None] | None = None,
               device: torch.device | str | None = None, precision: str = "fp32",
               prefetch_factor: int | None = None, features: BackboneFeatures | None = None) -> LoopResult:
    """Run `method` over `dataset` (a map-style stream) from the start or from a checkpoint.

    `should_stop(batches_done)`: checked at each batch boundary (default: a preemption signal).
    `device`: auto | cpu | cuda[:i] or a torch.device (None: where the model is).
    `features`: the initial backbone's features (engine/feature_cache.py), used only if the run
    turns out to have a fixed backbone.
    """
    if online_forward not in FORWARD_MODES:
        raise ValueError(f"online_forward must be one of {FORWARD_MODES}, got {online_forward!r}")
    if past_eval_every and tracker is None:
        raise ValueError("past_eval_every > 0 needs a forgetting tracker")
    should_stop = should_stop or (lambda _n: preemption.requested())
    n = len(dataset)
    order = method.order(n, seed)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if device is None:
        device = compute.module_device(model)
    else:
        device = compute.resolve_device(device) if not isinstance(device, torch.device) else device
        model.to(device)
    fetch = fetcher(dataset, device)
    cast = compute.autocast(device, precision)

    torch.manual_seed(seed)
    method.prepare(model, seed)
    if method.needs_stream_labels:
        method.see_stream_labels(dataset.stream_labels())
    optimizer = method.build_optimizer(model)
    scaler = compute.grad_scaler(device, precision)
    records: list[dict[str, Any]] = []
    start = 0
    state = checkpoint.load(checkpoint_dir) if checkpoint_dir is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        metrics.load_state_dict(state["metrics"])
        if tracker is not None:
            tracker.load_state_dict(state["tracker"])
        if state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        if "cuda" in state["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        records, start = state["records"], state["batches_done"]
        if state["order"] != order:
            raise RuntimeError(f"checkpoint in {checkpoint_dir} was written for another sample order")
    # the cheap test first: a run whose backbone trains never hashes it here
    if features is not None and not (features.model is model
                                     and fixed_backbone(model, method, optimizer is not None, online_forward)
                                     and features.still_valid()):
        features = None
    if (features is not None or (not method.uses_video and not past_eval_every)) and hasattr(dataset, "stream_labels"):
        # nothing reads the video but a cache miss, which `features` decodes itself
        dataset = LabelsOnly(dataset)
        fetch = fetcher(dataset, device)

    def supply(batch: Batch, train: bool) -> Batch:
        # the chunk's backbone features for the forward about to run (same mode, same rows)
        if features is not None and method.uses_video:
            batch["features"] = features(batch["index"].tolist(), train)
        return batch

    def save(done: int) -> None:
        if checkpoint_dir is None:
            return
        checkpoint.save(checkpoint_dir, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
            "method": method.state_dict(), "metrics": metrics.state_dict(),
            "tracker": tracker.state_dict() if tracker is not None else None, "scaler": scaler.state_dict(),
            "rng": _rng_state(device), "records": records, "batches_done": done, "order": order})


    # A private generator: a fresh DataLoader iterator must not draw from the global torch RNG,
    # or a resumed run would see different dropout masks than an uninterrupted one.
    loader = DataLoader(dataset, batch_sampler=batches[start:], generator=torch.Generator().manual_seed(seed),
                        **compute.loader_options(device, num_workers, prefetch_factor))
    done = start
    for batch in loader:
        batch = _tensor_labels(batch)
        # The records' columns, read on the host without waiting for the device.
        labels = {"verb": batch["verb"], "noun": batch["noun"]}
        index, verb, noun = batch["index"].tolist(), labels["verb"].tolist(), labels["noun"].tolist()
        batch = compute.to_device(batch, device)
        # (1) online predictions, before any update on this batch. A learner in train mode
        # predicts with its first update's forward, as upstream: batch-norm statistics move
        # once per batch and the dropout mask is the one the loss sees.
        first: Forward | None = None
        if optimizer is not None and online_forward == "train":
            _set_mode(model, True)
            with cast:
                first = method.train_forward(model, supply(batch, True), fetch)
            logits = {k: v.detach() for k, v in first.logits.items()}
        else:
            _set_mode(model, online_forward == "train")
            with torch.no_grad(), cast:
                logits = method.online_predict(model, supply(batch, online_forward == "train"))
        rec = metrics.update(logits["verb"], logits["noun"], labels["verb"], labels["noun"])
        # (2) update; inner iterations after the first forward again
        if optimizer is not None:
            _set_mode(model, True)
            for _ in range(method.inner_loop_iters):
                if first is None:
                    with cast:
                        first = method.train_forward(model, supply(batch, True), fetch)
                step, first = first, None
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(step.loss).backward()
                scaler.step(optimizer)
                scaler.update()
        method.observe(batch)
        for k, idx in enumerate(index):
            row = {"step": done, "position": len(records), "index": idx, "verb": verb[k], "noun": noun[k]}
            row |= {key: (float(v[k]) if not isinstance(v[k], (bool, int)) else v[k]) for key, v in rec.items()}
            records.append(row)
        done += 1
        # (3) past samples
        if past_eval_every and done % past_eval_every == 0:
            with cast:
                evaluate_past(model, fetch, records, batch, logits, tracker, done - 1, last=done == len(batches),
                              features=features)
        if on_batch is not None:
            on_batch(done, metrics.compute())
        last = done == len(batches)
        if not last and should_stop(done):
            save(done)
            return LoopResult(True, pd.DataFrame(records), {}, pd.DataFrame(), done)
        if not last and checkpoint_every and done % checkpoint_every == 0:
            save(done)

    table = pd.DataFrame(records)
    summary = dict(metrics.compute())
    events = pd.DataFrame(tracker.entries()) if tracker is not None else pd.DataFrame()
    return LoopResult(False, table, summary, events, done)


def _rng_state(device: torch.device) -> dict[str, Any]:
    # Dropout on a GPU draws from the device's generator, so an exact resume needs its state too.
    return checkpoint.rng_state() | ({"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {})


def _set_mode(model: nn.Module, training: bool) -> None:
    # nn.Module.train() walks every submodule (~2 % of a small model's loop, measured by
    # benchmarks/bench_stream_loop.py); the mode changes at most twice per batch, so skip no-ops.
    if model.training != training:
        model.train(training)

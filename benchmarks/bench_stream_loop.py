"""Stream loop efficiency: `run_stream` against the bare compute of the same model on the same batches.

One train user's stream, decoded once into `InMemoryClips` (the job's `cache_clips: true`), batch 4,
the stream job's loop settings (online forward in train mode, a checkpoint every 25 batches).
The limit is a plain loop over the same pre-collated batch tensors doing only what the protocol
must compute: the online forward (no_grad) and one SGD step (forward + backward + step); for
replay, the step runs the new and the memory batch through the model separately, as `Replay.loss`
does (its batch-norm statistics are per batch), with the memory batches drawn ahead of time.
Figure: limit seconds / loop seconds (= loop clips/s over limit clips/s); target >= 0.9.
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import default_collate

import _egotoy
from common import Record, interleaved, median

from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.methods.base import cross_entropy
from actlab.families.continual.metrics.online import OnlineMetrics

BATCH = 4
CHECKPOINT_EVERY = 25          # configs/continual/stream.yaml
MEMORY = 64


def method(name: str):
    cfg = OmegaConf.load(_egotoy.REPO / "configs" / "continual" / "method" / f"{name}.yaml")
    if name == "replay":
        cfg.memory_size = MEMORY
    return instantiate(cfg)


def engine_run(name: str, init, dataset, data_cfg, tmp: Path) -> float:
    model = copy.deepcopy(init)
    ckpt = Path(tempfile.mkdtemp(dir=tmp))
    result = run_stream(model, method(name), dataset, metrics=OnlineMetrics(data_cfg.num_verbs, data_cfg.num_nouns),
                        seed=0, batch_size=BATCH, online_forward="train", checkpoint_dir=ckpt,
                        checkpoint_every=CHECKPOINT_EVERY)
    return float(result.summary["online/action/top1"])


def bare_run(init, batches, memory_batches, online: bool = True, train: bool = True) -> None:
    model = copy.deepcopy(init)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for t, b in enumerate(batches):
        if online:
            with torch.no_grad():
                model(b["video"])
        if not train:
            continue
        loss = cross_entropy(model(b["video"]), b)
        if memory_batches is not None and memory_batches[t] is not None:
            m = memory_batches[t]
            loss = (loss + cross_entropy(model(m["video"]), m)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    warnings.filterwarnings("ignore")   # pytorchvideo/avalanche deprecation noise
    stream = _egotoy.open_stream()
    data_cfg = _egotoy.data_cfg()
    dataset = InMemoryClips(stream.dataset)
    n = len(dataset)
    for i in range(n):           # decode everything first: this benchmark measures compute, not decoding
        dataset[i]
    batches = [default_collate([dataset[i] for i in range(s, min(s + BATCH, n))]) for s in range(0, n, BATCH)]
    batches = [b | {k: torch.as_tensor(b[k]) for k in ("verb", "noun")} for b in batches]
    # Memory batches of a 64-sample reservoir-like draw from the past (same sizes as Replay's).
    rng = np.random.default_rng(0)
    mem = [None] + [default_collate([dataset[int(i)] for i in
                                     rng.choice(min(t * BATCH, n), size=min(BATCH, t * BATCH), replace=False)])
                    for t in range(1, len(batches))]
    init = _egotoy.new_model()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fns = {
            "finetune_loop": lambda: engine_run("finetune", init, dataset, data_cfg, tmp),
            "finetune_limit": lambda: bare_run(init, batches, None),
            "replay_loop": lambda: engine_run("replay", init, dataset, data_cfg, tmp),
            "replay_limit": lambda: bare_run(init, batches, mem),
            "online_forward_only": lambda: bare_run(init, batches, None, online=True, train=False),
            "train_step_only": lambda: bare_run(init, batches, None, online=False, train=True),
        }
        times = interleaved(fns, repeats=3, warmup=1)
    med = {k: median(v) for k, v in times.items()}
    fig = {
        "finetune_clips_per_s": n / med["finetune_loop"],
        "finetune_limit_clips_per_s": n / med["finetune_limit"],
        "finetune_loop_over_limit": med["finetune_limit"] / med["finetune_loop"],
        "replay_clips_per_s": n / med["replay_loop"],
        "replay_limit_clips_per_s": n / med["replay_limit"],
        "replay_loop_over_limit": med["replay_limit"] / med["replay_loop"],
        "online_forward_share_of_finetune_limit": med["online_forward_only"] / med["finetune_limit"],
        "train_step_share_of_finetune_limit": med["train_step_only"] / med["finetune_limit"],
    }
    notes = [f"user {stream.user}: {n} clips, batch {BATCH}, clips decoded once (InMemoryClips); "
             f"loop with checkpoint_every={CHECKPOINT_EVERY}, online_forward=train; replay memory {MEMORY} reservoir",
             "target: loop_over_limit >= 0.9"]
    for k in ("finetune", "replay"):
        if fig[f"{k}_loop_over_limit"] < 0.9:
            notes.append(f"{k}: below target ({fig[f'{k}_loop_over_limit']:.2f}); see the README for the profile")
    Record("stream_loop", figures=fig, raw={"median_s": med, "times_s": times, "n_clips": n}, notes=notes).write()


if __name__ == "__main__":
    main()

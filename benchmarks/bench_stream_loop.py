"""Stream loop efficiency: `run_stream` against the bare compute of the same model on the same batches.

One train user's stream, decoded once into `InMemoryClips` (the job's `cache_clips: true`), batch 4,
the stream job's loop settings (online forward in train mode, a checkpoint every 25 batches).
The limit is a plain loop over the same pre-collated batch tensors doing only what the protocol
must compute, with the method's own optimizer: per batch ONE train-mode forward whose rows are the
online predictions and whose loss takes the SGD step (forward + backward + step). For replay that
forward runs the new and the memory clips as one concatenated batch, as `Replay.train_forward`
does; the memory batches are the loop's own (the same `ReplayMemory`, policy and seed), drawn and
concatenated ahead of time. Figure: limit seconds / loop seconds (= loop clips/s over limit
clips/s); target >= 0.9. Also measured: the limit with a separate no-grad online forward before
each step (the protocol before the forward was shared) over the limit, i.e. what sharing saves.
"""
from __future__ import annotations

import copy
import functools
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import default_collate

import _egotoy
from common import Record, interleaved, median

from actlab.families.continual.data.records import action_key
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.methods.base import cross_entropy
from actlab.families.continual.methods.memory import ReplayMemory
from actlab.families.continual.metrics.online import OnlineMetrics

BATCH = 4
CHECKPOINT_EVERY = 25          # configs/continual/stream.yaml
MEMORY = 64
SEED = 0


@functools.cache
def method_cfg(name: str) -> DictConfig:
    """configs/continual/method/<name>.yaml as the stream job composes it (with its defaults)."""
    overrides = [f"method={name}"] + ([f"method.memory_size={MEMORY}"] if name == "replay" else [])
    with initialize_config_dir(config_dir=str(_egotoy.REPO / "configs" / "continual"), version_base="1.3"):
        return compose("stream", overrides=overrides).method


def method(name: str):
    """A fresh method (composed once per name, outside the timed runs after the warm-up)."""
    return instantiate(method_cfg(name))


class Step(NamedTuple):
    """One update of the limit: the forward's input and the labels of its two parts."""
    video: Tensor                        # the new clips, then the memory clips (if any)
    new: dict[str, Tensor]               # verb/noun of the new clips (the first rows)
    memory: dict[str, Tensor] | None     # verb/noun of the memory clips, None while the memory is empty


def engine_run(name: str, init, dataset, data_cfg, tmp: Path) -> float:
    model = copy.deepcopy(init)
    ckpt = Path(tempfile.mkdtemp(dir=tmp))
    result = run_stream(model, method(name), dataset, metrics=OnlineMetrics(data_cfg.num_verbs, data_cfg.num_nouns),
                        seed=SEED, batch_size=BATCH, online_forward="train", checkpoint_dir=ckpt,
                        checkpoint_every=CHECKPOINT_EVERY)
    return float(result.summary["online/action/top1"])


def limit_run(name: str, init, steps: list[Step], separate_online: bool = False) -> None:
    model = copy.deepcopy(init)
    m = method(name)
    m.prepare(model, SEED)
    opt = m.build_optimizer(model)
    model.train()
    for s in steps:
        n = len(s.new["verb"])
        if separate_online:
            with torch.no_grad():
                model(s.video[:n])
        out = model(s.video)
        loss = cross_entropy({k: v[:n] for k, v in out.items()}, s.new)
        if s.memory is not None:
            loss = (loss + cross_entropy({k: v[n:] for k, v in out.items()}, s.memory)) / 2
        elif name == "replay" and m.empty_memory_loss == "half":
            loss = loss / 2                      # empty memory: (mean_new + 0) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def labels(batch) -> dict[str, Tensor]:
    return {k: torch.as_tensor(batch[k]) for k in ("verb", "noun")}


def finetune_steps(batches) -> list[Step]:
    return [Step(b["video"], labels(b), None) for b in batches]


def replay_steps(dataset, batches) -> list[Step]:
    """The loop's memory draws (the configured policy, same seed: `Replay.prepare` seeds its memory
    with the loop's seed), one per batch (inner_loop_iters 1), collated and concatenated ahead of time."""
    configured = method("replay").memory
    memory = ReplayMemory(configured.size, configured.policy, SEED)
    steps = []
    for b in batches:
        past = memory.sample(len(b["index"]))
        if past:
            mem = default_collate([dataset[i] for i in past])
            steps.append(Step(torch.cat([b["video"], mem["video"]]), labels(b), labels(mem)))
        else:
            steps.append(Step(b["video"], labels(b), None))
        memory.store([(int(i), action_key(v, n)) for i, v, n in
                      zip(b["index"].tolist(), b["verb"].tolist(), b["noun"].tolist())])
    return steps


def main() -> None:
    warnings.filterwarnings("ignore")   # pytorchvideo/avalanche deprecation noise
    stream = _egotoy.open_stream()
    data_cfg = _egotoy.data_cfg()
    dataset = InMemoryClips(stream.dataset)
    n = len(dataset)
    for i in range(n):           # decode everything first: this benchmark measures compute, not decoding
        dataset[i]
    batches = [default_collate([dataset[i] for i in range(s, min(s + BATCH, n))]) for s in range(0, n, BATCH)]
    finetune = finetune_steps(batches)
    replay = replay_steps(dataset, batches)
    init = _egotoy.new_model()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fns = {
            "finetune_loop": lambda: engine_run("finetune", init, dataset, data_cfg, tmp),
            "finetune_limit": lambda: limit_run("finetune", init, finetune),
            "replay_loop": lambda: engine_run("replay", init, dataset, data_cfg, tmp),
            "replay_limit": lambda: limit_run("replay", init, replay),
            "finetune_limit_separate_online": lambda: limit_run("finetune", init, finetune,
                                                                separate_online=True),
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
        "finetune_separate_online_forward_over_shared": med["finetune_limit_separate_online"] / med["finetune_limit"],
    }
    notes = [f"user {stream.user}: {n} clips, batch {BATCH}, clips decoded once (InMemoryClips); "
             f"loop with checkpoint_every={CHECKPOINT_EVERY}, online_forward=train (online predictions from the "
             f"update's forward); replay memory {MEMORY} reservoir, new + memory in one forward",
             "target: loop_over_limit >= 0.9"]
    for k in ("finetune", "replay"):
        if fig[f"{k}_loop_over_limit"] < 0.9:
            notes.append(f"{k}: below target ({fig[f'{k}_loop_over_limit']:.2f}); see the README for the profile")
    Record("stream_loop", figures=fig, raw={"median_s": med, "times_s": times, "n_clips": n}, notes=notes).write()


if __name__ == "__main__":
    main()

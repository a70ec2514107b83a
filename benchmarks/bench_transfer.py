"""Transfer matrix N x N (N = 6 users): shared-backbone feature caching against N^2 full forwards.

Six head-only models (one per pool user): the same frozen backbone, each with its own heads
(seeded random heads stand in for head-only finetuning, which changes nothing but the heads).
Every model is evaluated on every user's whole stream with `StreamEvaluator` as the transfer job
does, with `cache_features=True` (one backbone pass per stream, backbone identity checked by a
hash of its weights per evaluation) and `cache_features=False` (N^2 full forwards). Clips are
decoded once up front for both, so the figure is compute only (with decoding in the loop the
naive side would also decode every stream N times). The two matrices must agree.

Full-finetune matrix: six models with different backbones (every weight and batch-norm running
stat of the seeded model perturbed, seed = user index), so the feature cache never hits. Per-model
evaluation (`StreamEvaluator`, as the transfer job does: N^2 backbone passes, one model at a time)
against `MultiModelEvaluator` (one read of each stream, the six backbones stacked and run by one
`vmap` call per batch). Clips are pre-decoded for both sides here too: the ratio is compute only.
"""
from __future__ import annotations

import copy
import math
import warnings

import torch

import _egotoy
from common import Record, interleaved, median

from actlab.families.continual.engine.batched_eval import MultiModelEvaluator
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.transfer import StreamEvaluator

USERS = ("68", "265", "324", "59", "23", "17")


def models(init: torch.nn.Module) -> list[torch.nn.Module]:
    out = []
    for k in range(len(USERS)):
        m = copy.deepcopy(init)
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for head in (m.verb_head, m.noun_head):
                head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.1)
                head.bias.zero_()
        out.append(m)
    return out


def full_finetune_models(init: torch.nn.Module) -> list[torch.nn.Module]:
    out = []
    for k in range(len(USERS)):
        m = copy.deepcopy(init).eval()
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
            for name, b in m.named_buffers():
                if name.endswith("running_mean"):
                    b.add_(torch.randn(b.shape, generator=g) * 0.02)
        out.append(m)
    return out


def batched_matrix(ms, streams) -> tuple[list[list[float]], int]:
    ev = MultiModelEvaluator(batch_size=4, num_workers=0, max_backbones=len(ms))
    cols = [[r["transfer/action/top1"] for r in ev.evaluate(ms, ds, prefix="transfer")] for _, ds in streams]
    return [list(row) for row in zip(*cols)], ev.backbone_calls


def max_diff(a, b) -> float:
    return max(abs(x - y) for rx, ry in zip(a, b) for x, y in zip(rx, ry) if not (math.isnan(x) and math.isnan(y)))


def matrix(ms, streams, cache: bool) -> tuple[list[list[float]], int]:
    ev = StreamEvaluator(batch_size=4, num_workers=0, cache_features=cache)
    mat = [[ev.evaluate(m, sha, ds, prefix="transfer")["transfer/action/top1"] for sha, ds in streams] for m in ms]
    return mat, ev.feature_passes


def main() -> None:
    warnings.filterwarnings("ignore")
    streams = []
    for u in USERS:
        s = _egotoy.open_stream(u)
        ds = InMemoryClips(s.dataset)
        for i in range(len(ds)):
            ds[i]
        streams.append((s.sha256, ds))
    ms = models(_egotoy.new_model())
    out = {}
    times = interleaved({"cached": lambda: out.__setitem__("cached", matrix(ms, streams, True)),
                         "naive": lambda: out.__setitem__("naive", matrix(ms, streams, False))},
                        repeats=2, warmup=1)
    ff = full_finetune_models(ms[0])
    times |= interleaved({"ff_per_model": lambda: out.__setitem__("ff_per_model", matrix(ff, streams, True)),
                          "ff_batched": lambda: out.__setitem__("ff_batched", batched_matrix(ff, streams))},
                         repeats=2, warmup=1)
    (mc, passes_c), (mn, passes_n) = out["cached"], out["naive"]
    (mp, passes_p), (mb, calls_b) = out["ff_per_model"], out["ff_batched"]
    diff = max_diff(mc, mn)
    med = {k: median(v) for k, v in times.items()}
    n_clips = sum(len(ds) for _, ds in streams)
    Record("transfer", figures={
        "n_users": len(USERS), "naive_over_cached_time": med["naive"] / med["cached"],
        "cached_seconds": med["cached"], "naive_seconds": med["naive"],
        "backbone_passes_cached": passes_c, "backbone_passes_naive": passes_n,
        "max_abs_top1_difference": diff,
        "ff_per_model_over_batched_time": med["ff_per_model"] / med["ff_batched"],
        "ff_per_model_seconds": med["ff_per_model"], "ff_batched_seconds": med["ff_batched"],
        "ff_backbone_passes_per_model": passes_p, "ff_stream_reads_batched": len(streams),
        "ff_max_abs_top1_difference": max_diff(mp, mb),
    }, raw={"median_s": med, "times_s": times, "clips_all_streams": n_clips,
            "ff_batched_vmap_calls": calls_b, "ff_top1_per_model": mp},
        notes=[f"{len(USERS)} x {len(USERS)} head-only models x streams ({n_clips} clips in all), eval mode, batch 4, "
               "clips pre-decoded for both sides",
               f"full-finetune: {len(USERS)} models with distinct backbones; per-model = StreamEvaluator "
               f"({len(USERS)}^2 backbone passes), batched = MultiModelEvaluator (one vmap over the "
               f"{len(USERS)} stacked backbones per batch, each stream read once); clips pre-decoded for both"]).write()


if __name__ == "__main__":
    main()

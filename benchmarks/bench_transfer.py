"""Transfer matrix N x N (N = 6 users): shared-backbone feature caching against N^2 full forwards.

Six head-only models (one per pool user): the same frozen backbone, each with its own heads
(seeded random heads stand in for head-only finetuning, which changes nothing but the heads).
Every model is evaluated on every user's whole stream with `StreamEvaluator` as the transfer job
does, with `cache_features=True` (one backbone pass per stream, backbone identity checked by a
hash of its weights per evaluation) and `cache_features=False` (N^2 full forwards). Clips are
decoded once up front for both, so the figure is compute only (with decoding in the loop the
naive side would also decode every stream N times). The two matrices must agree.
"""
from __future__ import annotations

import copy
import math
import warnings

import torch

import _egotoy
from common import Record, interleaved, median

from actlab.engine.clip_cache import InMemoryClips
from actlab.engine.transfer import StreamEvaluator

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
    (mc, passes_c), (mn, passes_n) = out["cached"], out["naive"]
    diff = max(abs(a - b) for ra, rb in zip(mc, mn) for a, b in zip(ra, rb) if not (math.isnan(a) and math.isnan(b)))
    med = {k: median(v) for k, v in times.items()}
    n_clips = sum(len(ds) for _, ds in streams)
    Record("transfer", figures={
        "n_users": len(USERS), "naive_over_cached_time": med["naive"] / med["cached"],
        "cached_seconds": med["cached"], "naive_seconds": med["naive"],
        "backbone_passes_cached": passes_c, "backbone_passes_naive": passes_n,
        "max_abs_top1_difference": diff,
    }, raw={"median_s": med, "times_s": times, "clips_all_streams": n_clips},
        notes=[f"{len(USERS)} x {len(USERS)} head-only models x streams ({n_clips} clips in all), eval mode, batch 4, "
               "clips pre-decoded for both sides",
               "full-finetune matrices (a backbone per model) are not batched across models: N^2 backbone passes"]).write()


if __name__ == "__main__":
    main()

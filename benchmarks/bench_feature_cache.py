"""The feature cache: the fixed-backbone runs of an egotoy grid with and without it.

Grid (3 train users each, whole streams, batch 4, online_forward eval as egotoy_main):
- the frozen reference (past evaluation after every batch, window 64 in chunks of 8, as egotoy_main);
- head-only finetuning with frozen batch-norm statistics, lr 0.1 / 0.01 / 0.001 (past evaluation too);
- the label window, 4 variants x windows 1 / 4 / 16 (no past evaluation, as egotoy_label_window).
Each run = the stream job's compute: run_stream + the hindsight evaluation (clips decoded once per
run, InMemoryClips, as `cache_clips: true`). Three passes, all measured in this process:
- without: the code path before the feature cache (no `features`; the label window decodes its
  stream like every other run, which is what it did: `uses_video` forced on);
- cold cache: a fresh `cache_dir`; the first run of each (backbone, stream) computes and writes the
  entries, later grid points read them;
- warm cache: the same grid again (a later sweep), every entry present.
Identical predictions: every run's records, forgetting entries and hindsight logits, compared
exactly (bit-equal) across the three passes.
"""
from __future__ import annotations

import shutil
import time
import warnings

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import _egotoy
from common import Record

from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.feature_cache import BackboneFeatures
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator
from actlab.families.continual.metrics.forgetting import ReexposureForgetting
from actlab.families.continual.metrics.online import OnlineMetrics

CACHE = _egotoy.CACHE / "feature_cache"
BATCH = 4
CPU = torch.device("cpu")
HEAD_ONLY = ["method=finetune", "method.head_only=true", "method.backbone_bn=frozen"]
GRID = ([("frozen", ["method=frozen"], True)]
        + [(f"head_only lr={lr}", [*HEAD_ONLY, f"method.lr={lr}"], True) for lr in (0.1, 0.01, 0.001)]
        + [(f"label_window {v} W={w}", ["method=label_window", f"method.variant={v}", f"method.window={w}"], False)
           for v in ("per_sample", "batched", "inclusive", "final_window") for w in (1, 4, 16)])


def method_cfgs():
    with initialize_config_dir(config_dir=str(_egotoy.REPO / "configs" / "continual"), version_base="1.3"):
        return {name: compose("stream", overrides=o).method for name, o, _ in GRID}


def one_run(name, cfg, past, stream, cache_dir, baseline):
    method = instantiate(cfg)
    if baseline:
        method.uses_video = True                  # the label window as it ran before: decoding its stream
    dataset = InMemoryClips(stream.dataset)
    model = _egotoy.new_model()
    features = None if baseline else BackboneFeatures(model, dataset, stream.sha256, cache_dir, CPU)
    tracker = ReexposureForgetting(window=64, eval_batch_size=8) if past else None
    result = run_stream(model, method, dataset, metrics=OnlineMetrics(8, 16), seed=0, batch_size=BATCH,
                        online_forward="eval", past_eval_every=1 if past else 0, tracker=tracker, features=features)
    own = method.hindsight_predict(model, len(dataset))
    if own is None:
        own = StreamEvaluator(BATCH, cache_features=False).logits(model, stream.sha256, dataset, fixed=features)
    if features is not None and features.still_valid():
        features.save()
    return result.records, result.forgetting, {k: own[k] for k in ("verb", "noun")}


def sweep(cfgs, streams, cache_dir, baseline):
    out, per_point = {}, {}
    wall, cpu = time.perf_counter(), time.process_time()
    for name, _, past in GRID:
        w, c = time.perf_counter(), time.process_time()
        for user, stream in streams.items():
            out[(name, user)] = one_run(name, cfgs[name], past, stream, cache_dir, baseline)
        per_point[name] = (time.perf_counter() - w, time.process_time() - c)
    return out, time.perf_counter() - wall, time.process_time() - cpu, per_point


def identical(a, b) -> bool:
    for key, (records, forgetting, own) in a.items():
        other = b[key]
        if not (records.equals(other[0]) and forgetting.equals(other[1])
                and all(torch.equal(own[k], other[2][k]) for k in own)):
            return False
    return a.keys() == b.keys()


def main() -> None:
    warnings.filterwarnings("ignore")
    shutil.rmtree(CACHE, ignore_errors=True)
    streams = {u: _egotoy.open_stream(u) for u in _egotoy.TRAIN_USERS}
    cfgs = method_cfgs()
    without, w0, c0, p0 = sweep(cfgs, streams, None, baseline=True)
    cold, w1, c1, p1 = sweep(cfgs, streams, CACHE, baseline=False)
    entries = sorted(CACHE.rglob("*.pt"))
    size = sum(p.stat().st_size for p in entries)
    warm, w2, c2, p2 = sweep(cfgs, streams, CACHE, baseline=False)
    same = identical(without, cold) and identical(without, warm)
    groups = {"frozen": ["frozen"], "head_only": [n for n, _, _ in GRID if n.startswith("head_only")],
              "label_window": [n for n, _, _ in GRID if n.startswith("label_window")]}
    per_group = {g: {label: [sum(p[n][i] for n in names) for i in (0, 1)]
                     for label, p in (("without", p0), ("cold", p1), ("warm", p2))} for g, names in groups.items()}
    fig = {"wall_s_without": w0, "wall_s_cold_cache": w1, "wall_s_warm_cache": w2,
           "cpu_s_without": c0, "cpu_s_cold_cache": c1, "cpu_s_warm_cache": c2,
           "speedup_wall_cold": w0 / w1, "speedup_wall_warm": w0 / w2,
           "speedup_cpu_cold": c0 / c1, "speedup_cpu_warm": c0 / c2,
           "identical_predictions": same, "runs_compared": len(without),
           "entries": len(entries), "entry_bytes": size}
    n_clips = {u: len(s.clips) for u, s in streams.items()}
    notes = [f"{len(GRID)} points x {len(streams)} users ({n_clips} clips), batch {BATCH}, online_forward eval, "
             "1 torch thread; per run: run_stream + hindsight; clips decoded once per run (InMemoryClips)",
             "without = no feature cache, the label window decoding its stream (the former path); cold = fresh "
             "cache_dir; warm = the same grid again with the entries present",
             "identical_predictions: records, forgetting entries and hindsight logits of every run, bit-equal "
             "across the three passes"]
    shutil.rmtree(CACHE, ignore_errors=True)
    Record("feature_cache", figures=fig, raw={"per_group_wall_cpu_s": per_group, "n_clips": n_clips},
           notes=notes).write()
    print(fig)
    print(per_group)


if __name__ == "__main__":
    main()

"""Decode once per sweep: a 14-point egotoy grid over 3 users, shared decode cache vs decoding per run.

What is measured is the data part of the runs, not the training: per run, opening the user's
stream and reading every sample once (what a run with `cache_clips: true` does: each clip decoded
once per run, kept in memory).
- per run decoding: each (point, user) run decodes its stream. Every point does identical work, so
  one point over the 3 users is timed (median of 2) and multiplied by 14;
- shared cache: the preparation step (decode + write each user's entry, once) + 14 points x 3
  users reading their entries, all timed for real.
Identical predictions: `run_stream` (finetune, egotoy_small, the same initial weights) over one
user's first 48 clips from the decoding dataset and from the cache entry: records compared exactly.
Wall and CPU (process) time are both recorded: on this shared machine the CPU time is what one
dedicated core would take.
"""
from __future__ import annotations

import copy
import shutil
import time
import warnings

import pandas as pd

import _egotoy
from bench_stream_loop import BATCH, method
from common import Record, median

from actlab.families.continual.data.clip_store import CachedClips, write_entry
from actlab.families.continual.data.user_streams import open_user_stream
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.metrics.online import OnlineMetrics

POINTS = 14
CACHE = _egotoy.CACHE / "decode_once"
PREDICTION_CLIPS = 48


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def read_all(cfg, user: str, use_cache: bool) -> type:
    stream = open_user_stream(cfg, user, use_cache=use_cache)
    for i in range(len(stream.dataset)):
        stream.dataset[i]
    return type(stream.dataset)


def predictions(cfg, user: str, use_cache: bool) -> pd.DataFrame:
    stream = open_user_stream(cfg, user, use_cache=use_cache)
    result = run_stream(copy.deepcopy(_egotoy.new_model()), method("finetune"), stream.dataset,
                        metrics=OnlineMetrics(cfg.num_verbs, cfg.num_nouns), seed=0, batch_size=BATCH, num_workers=0)
    return pd.DataFrame(result.records)


def main() -> None:
    warnings.filterwarnings("ignore")
    shutil.rmtree(CACHE, ignore_errors=True)
    cfg = _egotoy.data_cfg()
    cfg.cache_dir = str(CACHE)
    users = _egotoy.TRAIN_USERS
    n_clips = {u: len(open_user_stream(cfg, u, use_cache=False).clips) for u in users}

    per_run = [timed(lambda: [read_all(cfg, u, use_cache=False) for u in users]) for _ in range(2)]
    point_wall, point_cpu = median([w for w, _ in per_run]), median([c for _, c in per_run])

    def prepare():
        for u in users:
            s = open_user_stream(cfg, u, use_cache=False)
            write_entry(s.dataset, s.sha256, cfg.cache_dir, label=f"user {u}")
    prep_wall, prep_cpu = timed(prepare)
    assert all(read_all(cfg, u, use_cache=True) is CachedClips for u in users)
    reads = timed(lambda: [read_all(cfg, u, use_cache=True) for _ in range(POINTS) for u in users])

    small = cfg.copy()
    small.max_clips = PREDICTION_CLIPS
    s = open_user_stream(small, users[0], use_cache=False)
    write_entry(s.dataset, s.sha256, small.cache_dir, label=f"user {users[0]} (first {PREDICTION_CLIPS})")
    decoded, cached = predictions(small, users[0], False), predictions(small, users[0], True)
    identical = decoded.equals(cached)

    grid_decode = (POINTS * point_wall, POINTS * point_cpu)
    grid_cache = (prep_wall + reads[0], prep_cpu + reads[1])
    fig = {"grid_wall_s_decode_per_run": grid_decode[0], "grid_wall_s_shared_cache": grid_cache[0],
           "speedup_wall": grid_decode[0] / grid_cache[0],
           "grid_cpu_s_decode_per_run": grid_decode[1], "grid_cpu_s_shared_cache": grid_cache[1],
           "speedup_cpu": grid_decode[1] / grid_cache[1],
           "identical_predictions": identical, "prediction_rows_compared": len(decoded)}
    entry_bytes = sum(p.stat().st_size for p in CACHE.rglob("*.npy"))
    notes = [f"{POINTS} points x {len(users)} users ({sum(n_clips.values())} clips per point; per user {n_clips}); "
             f"data part of each run only: open the stream + read every sample once (cache_clips: true semantics)",
             "decode per run = 14 x one measured point (median of 2); shared cache = preparation (decode + atomic "
             "write of 3 entries) + 14 x 3 cached reads, all measured",
             f"identical_predictions: run_stream finetune on user {users[0]}'s first {PREDICTION_CLIPS} clips, "
             f"decoded vs cached, records compared exactly; the cache's .npy files total {entry_bytes} bytes"]
    shutil.rmtree(CACHE, ignore_errors=True)
    Record("decode_once", figures=fig, raw={"point_wall_s": point_wall, "point_cpu_s": point_cpu,
                                            "prepare_wall_s": prep_wall, "prepare_cpu_s": prep_cpu,
                                            "cached_reads_wall_s": reads[0], "cached_reads_cpu_s": reads[1],
                                            "n_clips": n_clips}, notes=notes).write()


if __name__ == "__main__":
    main()

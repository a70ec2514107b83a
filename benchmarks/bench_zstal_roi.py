"""zstal RoI classification and evaluator, against their straightforward versions (issue 13, §8).

1. RoI classification at B 16 x Q 40, T 128, D 512, 16 slots, 50 classes: one batched roi_align +
   one einsum (roi.py) vs a loop of one roi_align per proposal: identical (<= 1e-6), target >= 5x.
2. The evaluator vs a straightforward port of the official algorithm (pandas row iteration), 1 class,
   200 videos, 4,000 predictions, 10 thresholds: identical APs, target >= 10x.
3. End-to-end inference on the toy test split (THUMOS-like, split 0): videos/s (report only).
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from common import Record, interleaved, median

from actlab.families.zstal.evaluate import THRESHOLDS, average_precision, interpolated_ap, tiou
from actlab.families.zstal.roi import class_logits, roi_boxes, roi_features

B, Q, T, D, SLOTS, C = 16, 40, 128, 512, 16, 50


def roi_loop(feats, se, lengths, text, scale):
    """One roi_align call per proposal, then the similarity: the obvious version."""
    out = torch.empty(B, Q, C)
    grid = feats.transpose(1, 2)[:, :, None, :]
    for b in range(B):
        for q in range(Q):
            x1, x2 = (se[b, q] * lengths[b]).tolist()
            pooled = roi_align(grid[b:b + 1], torch.tensor([[0.0, x1, 0.0, x2, 0.0]]), (1, SLOTS), 1.0, -1, False)
            v = F.normalize(pooled[0, :, 0, :].mean(-1), dim=0)
            out[b, q] = scale * (text @ v)
    return out


def roi_batched(feats, se, lengths, text, scale_log):
    return class_logits(roi_features(feats, roi_boxes(se, lengths), SLOTS), text, scale_log).reshape(B, Q, C)


def official_port(gt: pd.DataFrame, pred: pd.DataFrame, thresholds) -> np.ndarray:
    """The official compute_average_precision_detection, row by row with pandas (Python 3 port)."""
    npos = float(len(gt))
    lock_gt = np.ones((len(thresholds), len(gt))) * -1
    pred = pred.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    tp = np.zeros((len(thresholds), len(pred)))
    fp = np.zeros((len(thresholds), len(pred)))
    gt_by_vid = gt.groupby("video-id")
    for idx, this_pred in pred.iterrows():
        try:
            gt_videoid = gt_by_vid.get_group(this_pred["video-id"])
        except KeyError:
            fp[:, idx] = 1
            continue
        this_gt = gt_videoid.reset_index()
        tiou_arr = tiou(this_pred[["t-start", "t-end"]].values.astype(float), this_gt[["t-start", "t-end"]].values)
        tiou_sorted_idx = np.argsort(-tiou_arr, kind="stable")
        for tidx, tiou_thr in enumerate(thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt.loc[jdx]["index"]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt.loc[jdx]["index"]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    rec, prec = tp_cum / npos, tp_cum / (tp_cum + fp_cum)
    return np.array([interpolated_ap(prec[k], rec[k]) for k in range(len(thresholds))])


def bench_roi(record: Record) -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(B, T, D, generator=g)
    c = torch.rand(B, Q, generator=g)
    w = torch.rand(B, Q, generator=g) * 0.5
    se = torch.stack([c - w / 2, c + w / 2], -1).clamp(0, 1)
    lengths = torch.randint(64, T + 1, (B,), generator=g)
    text = F.normalize(torch.randn(C, D, generator=g), dim=-1)
    scale_log = math.log(100.0)
    a = roi_batched(feats, se, lengths, text, scale_log)
    b = roi_loop(feats, se, lengths, text, 100.0)
    diff = float((a - b).abs().max() / 100.0)      # on the cosines
    times = interleaved({"batched": lambda: roi_batched(feats, se, lengths, text, scale_log),
                         "loop": lambda: roi_loop(feats, se, lengths, text, 100.0)}, repeats=5)
    record.figures |= {"roi/speedup_batched_vs_loop": median(times["loop"]) / median(times["batched"]),
                       "roi/max_abs_cos_diff": diff, "roi/identical_1e-6": diff <= 1e-6}
    record.raw |= {"roi/median_s": {k: median(v) for k, v in times.items()}}


def bench_evaluator(record: Record) -> None:
    rng = np.random.default_rng(0)
    gt_rows, pred_rows = [], []
    for v in range(200):
        for _ in range(rng.integers(1, 6)):
            s = rng.uniform(0, 200)
            gt_rows.append((f"v{v}", s, s + rng.uniform(2, 30)))
    for _ in range(4000):
        v = int(rng.integers(0, 220))                # some videos without GT
        s = rng.uniform(0, 200)
        pred_rows.append((f"v{v}", s, s + rng.uniform(1, 40), float(rng.uniform())))
    gt_df = pd.DataFrame(gt_rows, columns=["video-id", "t-start", "t-end"])
    pred_df = pd.DataFrame(pred_rows, columns=["video-id", "t-start", "t-end", "score"])
    by_video: dict[str, list] = {}
    for v, s, e in gt_rows:
        by_video.setdefault(v, []).append((s, e))
    gt_arr = {v: np.asarray(x) for v, x in by_video.items()}
    thresholds = THRESHOLDS["anet"]
    ours = average_precision(gt_arr, pred_rows, thresholds)
    port = official_port(gt_df, pred_df, thresholds)
    times = interleaved({"ours": lambda: average_precision(gt_arr, pred_rows, thresholds),
                         "official_port": lambda: official_port(gt_df, pred_df, thresholds)}, repeats=3)
    record.figures |= {"eval/speedup_vs_official_port": median(times["official_port"]) / median(times["ours"]),
                       "eval/max_abs_ap_diff": float(np.abs(ours - port).max())}
    record.raw |= {"eval/median_s": {k: median(v) for k, v in times.items()}, "eval/ap": ours.tolist()}


def bench_inference(record: Record) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from actlab.families.zstal.infer import predict
    from actlab.families.zstal.job import classifier
    from actlab.families.zstal.samples import prepare
    from actlab.families.zstal.zstaltoy import generate

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        toy = generate(Path(tmp) / "zstaltoy", 0)
        with initialize_config_dir(str(repo / "configs" / "zstal"), version_base="1.3"):
            cfg = compose("zstal", ["experiment=zstaltoy_main", "data=zstaltoy_thumos", f"paths.zstaltoy={toy}"])
        prepared = prepare(cfg.data, 75, 0)
        clf, _ = classifier(cfg, prepared)
        model = instantiate(cfg.model, in_dim=int(prepared.test[0].feats.shape[1]))
        t0 = time.perf_counter()
        predict(model, prepared.test, clf, int(cfg.data.window.size))
        seconds = time.perf_counter() - t0
    record.figures["inference/toy_videos_per_s"] = len(prepared.test) / seconds
    record.raw["inference/n_videos"] = len(prepared.test)


def main() -> None:
    torch.set_num_threads(1)
    record = Record("zstal_roi")
    bench_roi(record)
    bench_evaluator(record)
    bench_inference(record)
    record.notes.append("targets: roi >= 5x, evaluator >= 10x (ratios of medians, interleaved in one process)")
    record.write()


if __name__ == "__main__":
    main()

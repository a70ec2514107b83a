"""Test-time: detector proposals per window -> CLIP RoI classification -> detections in video seconds,
merged per video; the oracle-proposal diagnostic and the uniform sliding-window baseline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from actlab import device as compute
from actlab.families.zstal.boxes import cw_to_se
from actlab.families.zstal.evaluate import Detection
from actlab.families.zstal.roi import class_logits, decode, fuse, roi_boxes, roi_features
from actlab.families.zstal.samples import TestVideo, window_batch
from actlab.families.zstal.windows import to_video


@dataclass(frozen=True)
class Classifier:
    text: Tensor              # [C, E] normalized targets of the test classes (on the detector's device)
    classes: list[str]
    logit_scale: float        # log value from the checkpoint
    exp_scale: bool = True
    slots: int = 16
    pool: str = "before"
    fusion: str = "after_softmax"
    post: str = "class_agnostic"
    topk: int = 100
    nms_iou: float | None = None

    def logits(self, feats: Tensor, se: Tensor, lengths: Tensor) -> Tensor:
        """[B, T, D] raw features, [B, Q, 2] normalized proposals -> [B, Q, C]."""
        pooled = roi_features(feats, roi_boxes(se, lengths), self.slots)
        text = self.text.to(pooled.device)     # a no-op when the targets are already there
        return class_logits(pooled, text, self.logit_scale, self.pool, self.exp_scale).reshape(
            se.shape[0], se.shape[1], -1)


def _nms(dets: list[Detection], iou: float | None) -> list[Detection]:
    if not iou or not dets:
        return dets
    boxes = torch.tensor([[d.start, 0.0, d.end, 1.0] for d in dets], dtype=torch.float64)
    scores = torch.tensor([d.score for d in dets], dtype=torch.float64)
    labels = {lb: i for i, lb in enumerate(sorted({d.label for d in dets}))}
    keep = batched_nms(boxes, scores, torch.tensor([labels[d.label] for d in dets]), iou)
    return [dets[i] for i in sorted(keep.tolist())]


@torch.no_grad()
def predict(model: nn.Module, videos: list[TestVideo], clf: Classifier, size: int
            ) -> tuple[list[Detection], list[Detection]]:
    """(detections of the test classes, class-agnostic proposals scored by actionness), in seconds.
    The detector and the RoI classification run on the model's device (`clf.text` must be there);
    decoding into detections on the CPU, after one copy per video."""
    model.eval()
    device = compute.module_device(model)
    dets, props = [], []
    for video in videos:
        feats, mask = compute.to_device(window_batch(video, size), device)
        out = model(feats, mask)[-1]
        se = cw_to_se(out["cw"])
        prob = fuse(out["logit"], clf.logits(feats, se, mask.sum(1)), clf.fusion)
        se, prob, logit = se.cpu(), prob.cpu(), out["logit"].cpu()
        mine = []
        for w, window in enumerate(video.windows):
            seconds = to_video(se[w].numpy().astype(np.float64), window) * video.seconds_per_unit
            scores, queries, classes = decode(prob[w], clf.post, clf.topk)
            mine += [Detection(video.name, float(seconds[q, 0]), float(seconds[q, 1]), float(s), clf.classes[c])
                     for s, q, c in zip(scores.tolist(), queries.tolist(), classes.tolist())]
            action = logit[w].sigmoid().tolist()
            props += [Detection(video.name, float(seconds[q, 0]), float(seconds[q, 1]), action[q], "action")
                      for q in range(len(action))]
        dets += _nms(mine, clf.nms_iou)
    return dets, props


@torch.no_grad()
def oracle(videos: list[TestVideo], gt: list[Detection], clf: Classifier) -> list[Detection]:
    """The test-class GT segments as proposals (actionness 1), CLIP-named: the classification ceiling.
    Classified where `clf.text` is; decoded on the CPU."""
    by_video: dict[str, list[Detection]] = {}
    for g in gt:
        by_video.setdefault(g.video, []).append(g)
    dets = []
    for video in videos:
        segs = by_video.get(video.name, [])
        if not segs:
            continue
        device = clf.text.device
        feats = torch.from_numpy(video.feats)[None].to(device)
        units = torch.tensor([[g.start, g.end] for g in segs], dtype=torch.float32, device=device) / video.seconds_per_unit
        se = (units / len(video.feats)).clamp(0, 1)[None]
        logits = clf.logits(feats, se, torch.tensor([len(video.feats)], device=device))[0]
        prob = fuse(torch.full((len(segs),), 30.0, device=device), logits, clf.fusion).cpu()
        scores, queries, classes = decode(prob, clf.post, clf.topk)
        dets += [Detection(video.name, segs[q].start, segs[q].end, float(s), clf.classes[c])
                 for s, q, c in zip(scores.tolist(), queries.tolist(), classes.tolist())]
    return dets


def sliding_proposals(videos: list[TestVideo], scales: tuple[int, ...] = (8, 16, 32, 64), overlap: float = 0.5
                      ) -> list[Detection]:
    """The uniform baseline: windows of each scale (snippets) at the given overlap, all scored 1."""
    out = []
    for video in videos:
        t = len(video.feats)
        for scale in scales:
            step = max(1, int(scale * (1 - overlap)))
            for s in range(0, max(1, t - scale + 1), step):
                out.append(Detection(video.name, s * video.seconds_per_unit,
                                     min(t, s + scale) * video.seconds_per_unit, 1.0, "action"))
    return out

"""Hungarian matching of queries to GT segments and the set losses (focal, L1, 1-D gIoU)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from actlab.families.zstal.boxes import cw_to_se, pairwise_iou_giou, se_to_cw

ALPHA, GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class Weights:
    focal: float = 2.0
    l1: float = 5.0
    giou: float = 2.0


def match(cost: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, GT indices) of the minimum-cost assignment of a [Q, G] cost matrix."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return rows, cols


def matching_cost(logit: Tensor, cw: Tensor, gt_se: Tensor, w: Weights) -> Tensor:
    """[Q, G]: w.focal * focal + w.l1 * L1(cw) + w.giou * (-gIoU), with the Deformable-DETR focal cost."""
    p = logit.sigmoid()[:, None]
    pos = ALPHA * (1 - p) ** GAMMA * -(p + 1e-8).log()
    neg = (1 - ALPHA) * p ** GAMMA * -(1 - p + 1e-8).log()
    l1 = torch.cdist(cw, se_to_cw(gt_se), p=1)
    _, giou = pairwise_iou_giou(cw_to_se(cw), gt_se)
    return w.focal * (pos - neg) + w.l1 * l1 + w.giou * -giou


def set_loss(outputs: list[dict[str, Tensor]], targets: list[Tensor], w: Weights) -> tuple[Tensor, dict[str, float]]:
    """Sum over decoder layers (the last and the auxiliary ones) of the matched losses; targets are
    [G, 2] normalized (start, end) per item. Normalized by the number of GT segments."""
    n_gt = max(1, sum(len(t) for t in targets))
    total, parts = 0.0, {"focal": 0.0, "l1": 0.0, "giou": 0.0}
    for out in outputs:
        logit, cw = out["logit"], out["cw"]
        labels = torch.zeros_like(logit)
        l1 = giou = logit.new_zeros(())
        for b, gt in enumerate(targets):
            if len(gt) == 0:
                continue
            with torch.no_grad():
                qi, gi = match(matching_cost(logit[b], cw[b], gt, w))
            qi, gi = torch.as_tensor(qi, device=logit.device), torch.as_tensor(gi, device=logit.device)
            labels[b, qi] = 1.0
            l1 = l1 + (cw[b, qi] - se_to_cw(gt[gi])).abs().sum()
            g = pairwise_iou_giou(cw_to_se(cw[b, qi]), gt[gi])[1].diagonal()
            giou = giou + (1 - g).sum()
        focal = sigmoid_focal_loss(logit, labels, ALPHA, GAMMA, reduction="sum") / n_gt
        l1, giou = l1 / n_gt, giou / n_gt
        total = total + w.focal * focal + w.l1 * l1 + w.giou * giou
        parts = {k: parts[k] + float(v.detach()) for k, v in (("focal", focal), ("l1", l1), ("giou", giou))}
    return total, parts

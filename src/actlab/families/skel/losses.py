"""The family's losses, exactly as issue 14 §4 defines them (one row per sample, torch or numpy in).

- `label_targets`: G_ij = [y_i = y_j] / sum_k [y_i = y_k] (all-distinct labels -> CLIP's identity).
- `itc_loss`: symmetric cross-entropy of S = v t^T / tau against G.
- `itm_negative_probs` / `sample_negatives`: hard negatives drawn from the other-class entries of
  a similarity row, one batched `torch.multinomial` for every row.
- `momentum_itc_loss`: ALBEF's momentum distillation over [momentum batch; queue] columns.
- `pacl_logits`: PACL's frame-to-text attention pooling against all class texts.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_LABEL = -100      # label of the queue's initial random slots: matches no class


def _t(x: Any, dtype: torch.dtype | None = None) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=dtype)


def label_targets(row_labels: Any, col_labels: Any | None = None) -> Tensor:
    """G [R, C]: each row spreads its mass evenly over the columns of its own label."""
    rows = _t(row_labels, torch.long)
    cols = rows if col_labels is None else _t(col_labels, torch.long)
    same = (rows[:, None] == cols[None, :]).float()
    return same / same.sum(1, keepdim=True).clamp_min(1.0)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """-mean_i sum_j targets_ij log softmax_j logits_i."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def itc_loss(v: Any, t: Any, labels: Any, temp: Any) -> Tensor:
    """L_itc = (CE(S, G) + CE(S^T, G)) / 2 with S = v t^T / tau; v, t unit-norm [B, D]."""
    v, t = _t(v, torch.float32), _t(t, torch.float32)
    sim = v @ t.T / temp
    g = label_targets(labels).to(sim)
    return 0.5 * (soft_cross_entropy(sim, g) + soft_cross_entropy(sim.T, g))


def itm_negative_probs(sim: Any, labels: Any) -> Tensor:
    """P_ij = exp(sim_ij)[y_j != y_i] / sum_k exp(sim_ik)[y_k != y_i]; a row without another class
    is all zero. A row whose other-class mass underflows is uniform over its other-class entries."""
    sim = _t(sim, torch.float32).detach()
    y = _t(labels, torch.long)
    other = y[:, None] != y[None, :]
    probs = torch.softmax(sim.masked_fill(~other, float("-inf")), dim=1)
    probs = torch.nan_to_num(probs, nan=0.0) * other
    bad = other.any(1) & ~(probs.sum(1) > 0)
    if bad.any():
        uniform = other.float() / other.sum(1, keepdim=True).clamp_min(1)
        probs = torch.where(bad[:, None], uniform, probs)
    return probs


def sample_negatives(probs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(rows with a negative, their drawn column): one `torch.multinomial` over the valid rows."""
    rows = torch.nonzero(probs.sum(1) > 0).flatten()
    if rows.numel() == 0:
        return rows, rows
    # drawn on the CPU with the loop's CPU generator (a CUDA tensor cannot use it): the same draws
    # on every device, and the generator state the checkpoint holds stays the one that was used
    return rows, torch.multinomial(probs[rows].cpu(), 1, generator=generator).flatten().to(probs.device)


def momentum_itc_loss(v: Any, t: Any, v_m: Any, t_m: Any, labels: Any, q_v: Any, q_t: Any, q_labels: Any,
                      alpha: float, temp: Any) -> Tensor:
    """ALBEF ITC with momentum distillation: columns [momentum batch; queue], targets
    alpha * softmax(momentum sims / tau) + (1 - alpha) * G (G label-aware over all columns)."""
    v, t, v_m, t_m, q_v, q_t = (_t(x, torch.float32) for x in (v, t, v_m, t_m, q_v, q_t))
    y = _t(labels, torch.long)
    col_labels = torch.cat([y, _t(q_labels, torch.long).to(y.device)])
    g = label_targets(y, col_labels).to(v)
    text_cols = torch.cat([t_m, q_t]).detach()
    video_cols = torch.cat([v_m, q_v]).detach()
    with torch.no_grad():
        i2t_target = alpha * torch.softmax(v_m @ text_cols.T / temp, 1) + (1 - alpha) * g
        t2i_target = alpha * torch.softmax(t_m @ video_cols.T / temp, 1) + (1 - alpha) * g
    return 0.5 * (soft_cross_entropy(v @ text_cols.T / temp, i2t_target)
                  + soft_cross_entropy(t @ video_cols.T / temp, t2i_target))


def alpha_at(step: int, steps_per_epoch: int, alpha: float = 0.4) -> float:
    """Distillation weight: ramped linearly from 0 over epoch 0, then constant (ALBEF)."""
    return alpha * min(1.0, step / max(1, steps_per_epoch))


@torch.no_grad()
def momentum_update(momentum: torch.nn.Module, online: torch.nn.Module, m: float = 0.995) -> None:
    """theta_m <- m theta_m + (1 - m) theta (parameters; buffers such as BN statistics are copied)."""
    for pm, p in zip(momentum.parameters(), online.parameters()):
        pm.mul_(m).add_(p.detach(), alpha=1 - m)
    for bm, b in zip(momentum.buffers(), online.buffers()):
        bm.copy_(b)


def pacl_logits(frames: Any, texts: Any, temp: Any, weighting: str = "softmax") -> Tensor:
    """PACL logits [B, L] of frame embeddings P [B, T, D] against class texts [L, D].

    c_blt = cos(P_bt, T_l); a = softmax_t(c) ("softmax") or sigmoid(10 c) ("sigmoid10");
    p_bl = sum_t a_blt P_bt (raw frames, not divided by sum a); logit_bl = cos(p_bl, T_l) / tau.
    """
    p, txt = _t(frames, torch.float32), _t(texts, torch.float32)
    c = torch.einsum("btd,ld->blt", F.normalize(p, dim=-1), F.normalize(txt, dim=-1))
    if weighting == "softmax":
        a = torch.softmax(c, dim=-1)
    elif weighting == "sigmoid10":
        a = torch.sigmoid(10 * c)
    else:
        raise ValueError(f"pacl weighting must be softmax or sigmoid10, got {weighting!r}")
    pooled = torch.einsum("blt,btd->bld", a, p)
    return (F.normalize(pooled, dim=-1) * F.normalize(txt, dim=-1)[None]).sum(-1) / temp

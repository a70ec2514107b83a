"""One training step per variant (`step_loss`, and `TrainStep`: the step as a module, what the shared
loop trains and DDP wraps), the optimizers and the schedule, and the test-split evaluation."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from actlab import device as compute
from actlab.families.skel import losses
from actlab.families.skel.metrics import mean_class_accuracy, topk_accuracy
from actlab.families.skel.model import CEModel, SkelTextModel
from actlab.families.skel.queue import gather_across_ranks


def warmup_cosine(warmup_steps: int, total_steps: int, start: float = 0.1) -> Callable[[int], float]:
    """LR factor per iteration: linear from `start` to 1 over the warm-up, then cosine to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return start + (1 - start) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def make_optimizer(model: nn.Module, opt: Any) -> torch.optim.Optimizer:
    """CE: pyskl's SGD recipe. Text variants: AdamW with the skeleton encoder, the text tower and
    the rest as three groups (lr and weight decay of each from the config)."""
    if isinstance(model, CEModel):
        return torch.optim.SGD(model.parameters(), lr=float(opt.lr), momentum=float(opt.momentum),
                               weight_decay=float(opt.weight_decay), nesterov=False)
    trainable = {id(p): p for p in model.parameters() if p.requires_grad}
    encoder = [p for p in model.video.encoder.parameters() if id(p) in trainable]
    tower = [p for p in model.text.tower.parameters() if id(p) in trainable]
    taken = {id(p) for p in [*encoder, *tower]}
    rest = [p for i, p in trainable.items() if i not in taken]
    wd = float(opt.weight_decay)
    groups = [{"params": encoder, "lr": float(opt.lr_skeleton), "weight_decay": wd * float(opt.decay_mult)},
              {"params": tower, "lr": float(opt.lr_text), "weight_decay": wd * float(opt.decay_mult)},
              {"params": rest, "lr": float(opt.lr), "weight_decay": wd}]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def step_loss(model: nn.Module, batch: dict[str, Any], generator: torch.Generator,
              steps_per_epoch: int, alpha: float) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch for the model's variant, and the batch's logged metrics."""
    x, y = batch["heatmap"], batch["label"]
    if isinstance(model, CEModel):
        logits = model(x)
        model.step += 1
        return F.cross_entropy(logits, y), {"top1": (logits.argmax(1) == y).float().mean().item()}
    loss_name = model.cfg.loss
    with torch.no_grad():
        model.temp.clamp_(0.001, 0.5)
    temp = model.temp
    if loss_name == "itc_mom":
        losses.momentum_update(model.video_m, model.video, model.cfg.momentum)
        losses.momentum_update(model.text_m, model.text, model.cfg.momentum)
    v, e, frames = model.video(x)
    metrics: dict[str, float] = {"tau": float(temp.detach())}
    if loss_name == "pacl":
        t_all = model.encode_texts()[0]
        logits = losses.pacl_logits(model.pacl(frames), t_all, temp, model.cfg.pacl_weighting)
        # PACL pools the frames itself and never reads the pooled clip embedding v; 0 x v keeps the
        # video projection in the graph, since DDP (without find_unused_parameters) waits for a
        # gradient of every trainable parameter in every step. It adds exact zeros.
        loss = F.cross_entropy(logits, y) + 0.0 * v.sum()
    else:
        t, states, pad, eot = model.encode_texts(y)
        if loss_name == "itc_mom":
            with torch.no_grad():
                v_m = model.video_m(x)[0]
                t_m = model.text_m.forward(model.tokens[y])[0]
            q = model.queue
            a = losses.alpha_at(int(model.step), steps_per_epoch, alpha)
            loss = losses.momentum_itc_loss(v, t, v_m, t_m, y, q.video, q.text, q.labels, a, temp)
            q.enqueue(*gather_across_ranks(v_m, t_m, y))     # after the loss, the global batch
            metrics["alpha"] = a
        else:
            loss = losses.itc_loss(v, t, y, temp)
        metrics["itc_loss"] = loss.item()
        if loss_name == "itc_itm":
            itm, skipped = itm_loss(model, v, t, e, states, pad, eot, y, temp, generator)
            loss = loss + itm
            metrics["itm_loss"] = itm.item()
            metrics["itm_skipped"] = float(skipped)
            if skipped:
                model.itm_skips += 1
    model.step += 1
    return loss, metrics


class TrainStep(nn.Module):
    """One training step of `model` as a module: `forward(batch, generator)` is `step_loss`.

    The shared loop hands its `loss_fn` the module it trains, under DDP the DistributedDataParallel
    wrapper, which must be called rather than reached into (src/actlab/train/loop.py); the step reads
    the model's parts (video, text, queue, ITM head, counters), so it is the module DDP wraps. Its
    state_dict is the model's under `model.` (the loop's checkpoint); the run's artifact is the
    model's own. `steps` and `samples` count this process's training forwards (plain attributes,
    not state: a rank's share of the global batches, logged by the job)."""

    def __init__(self, model: nn.Module, steps_per_epoch: int, alpha: float) -> None:
        super().__init__()
        self.model = model
        self.steps_per_epoch, self.alpha = steps_per_epoch, alpha
        self.steps = self.samples = 0

    def forward(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        self.steps += 1
        self.samples += len(batch["label"])
        return step_loss(self.model, batch, generator, self.steps_per_epoch, self.alpha)


def itm_loss(model: SkelTextModel, v: Tensor, t: Tensor, e: Tensor, states: Tensor, pad: Tensor, eot: Tensor,
             y: Tensor, temp: Tensor, generator: torch.Generator) -> tuple[Tensor, bool]:
    """CE over B positive pairs and the hard negative pairs (t_i, v_neg(i)), (t_neg(i), v_i)."""
    sim = (v @ t.T / temp).detach()
    video_rows, neg_video = losses.sample_negatives(losses.itm_negative_probs(sim.T, y), generator)
    text_rows, neg_text = losses.sample_negatives(losses.itm_negative_probs(sim, y), generator)
    b = len(y)
    if video_rows.numel() == 0:                # one class in the batch: no negative exists, L_itm = 0
        # The head still scores the positive pairs, times 0: DDP (without find_unused_parameters)
        # waits for a gradient of every trainable parameter in every step, and another rank's
        # shard of the same global batch may have negatives. The gradients it adds are exact zeros.
        logits = model.itm(states, pad, eot, e)
        return 0.0 * logits.sum(), True
    text_idx = torch.cat([torch.arange(b, device=y.device), video_rows, neg_text])
    video_idx = torch.cat([torch.arange(b, device=y.device), neg_video, text_rows])
    logits = model.itm(states[text_idx], pad[text_idx], eot[text_idx], e[video_idx])
    target = torch.cat([torch.ones(b, dtype=torch.long, device=y.device),
                        torch.zeros(len(text_idx) - b, dtype=torch.long, device=y.device)])
    return F.cross_entropy(logits, target), False


@torch.no_grad()
def test_scores(model: nn.Module, dataset: Dataset, batch_size: int, num_workers: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N, L], scores of log softmax(cos / tau) [N, L], labels [N]): per view softmax
    (text variants: of raw cosines, no tau; CE: of the logits), mean over the views. Computed on the
    model's device, brought to the CPU once at the end."""
    model.eval()
    device = compute.module_device(model)
    scores, scores_tau, labels = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, **compute.loader_options(device, num_workers)):
        x = batch["heatmap"]
        b, views = x.shape[:2]
        flat = compute.to_device(x.flatten(0, 1), device)
        if isinstance(model, CEModel):
            out = model(flat)
            tau = 1.0
        else:
            out = model.class_cosines(flat)
            tau = float(model.temp)
        out = out.view(b, views, -1)
        scores.append(torch.softmax(out, -1).mean(1))
        scores_tau.append(torch.log_softmax(out / tau, -1).mean(1))
        labels.append(batch["label"])
    return torch.cat(scores).cpu().numpy(), torch.cat(scores_tau).cpu().numpy(), torch.cat(labels).numpy()


def metrics_of(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"val/top1": topk_accuracy(scores, labels, 1), "val/top5": topk_accuracy(scores, labels, 5),
            "val/mean_class_acc": mean_class_accuracy(scores, labels)}

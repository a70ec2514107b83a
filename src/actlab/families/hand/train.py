"""Training of the pose network (HPE, optionally FiLM-conditioned) and of the action LSTM (HAR) on
the shared resumable loop (actlab.train.loop.fit), with model selection on validation.

Selection: after every epoch the validation metric (HPE: mean 3D error in mm, with the GT action
for a FiLM network; HAR: top-1) is compared with the best so far; a better epoch's weights go to
`<state_dir>/best.pt` and `best.json` before the loop's checkpoint, so a resumed run selects the
same epoch. HPE stops early after `patience` epochs without improvement. No state_dir: in memory.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from actlab.device import loop_options
from actlab import preemption
from actlab.atomic import atomic_write_bytes, atomic_write_json, read_json
from actlab import device as compute
from actlab.families.hand.crop import com_of, standardise, unstandardise
from actlab.families.hand.data import FrameTable
from actlab.families.hand.fpha import MMCP, NUM_ACTIONS
from actlab.families.hand.metrics import action_summary, joint_errors
from actlab.families.hand.models import ActionLSTM, PoseNet, condition
from actlab.families.hand.pca import PCAPrior
from actlab.train.loop import FitResult, LoopConfig, fit


class Selection:
    """The best epoch so far by a validation metric, its weights kept beside the loop's checkpoint."""

    def __init__(self, folder: Path | None, higher_is_better: bool, patience: int | None = None) -> None:
        self.folder, self.higher, self.patience = folder, higher_is_better, patience
        self.best: dict[str, Any] = {"epoch": 0, "value": None}
        self.state: dict[str, Tensor] | None = None
        self.last_epoch = 0
        if folder is not None and (folder / "best.json").is_file():
            self.best = read_json(folder / "best.json")

    def update(self, epoch: int, value: float, model: nn.Module) -> None:
        self.last_epoch = epoch
        old = self.best["value"]
        if old is not None and not (value > old if self.higher else value < old) and epoch != self.best["epoch"]:
            return
        self.best = {"epoch": epoch, "value": float(value)}
        self.state = copy.deepcopy(model.state_dict())
        if self.folder is not None:
            import io

            buf = io.BytesIO()
            torch.save(self.state, buf)
            atomic_write_bytes(self.folder / "best.pt", buf.getvalue())
            atomic_write_json(self.folder / "best.json", self.best)

    def exhausted(self) -> bool:
        return self.patience is not None and self.last_epoch - self.best["epoch"] >= self.patience

    def load_into(self, model: nn.Module) -> None:
        state = self.state
        if state is None and self.folder is not None and (self.folder / "best.pt").is_file():
            state = torch.load(self.folder / "best.pt", map_location="cpu", weights_only=True)
        if state is None:
            raise RuntimeError("no selected epoch: training produced no validation record")
        model.load_state_dict(state)


@dataclass
class Trained:
    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    interrupted: bool           # preempted: call again to resume


def _fit(model: nn.Module, train_set: Dataset, *, epochs: int, batch_size: int, seed: int, lr: float,
         amsgrad: bool, loss_fn, validate: Callable[[nn.Module], dict[str, float]], metric: str, higher: bool,
         patience: int | None, state_dir: Path | None, on_epoch, checkpoint_every: int = 0,
         collate_fn=None, options: dict[str, Any] | None = None, lead: bool = True) -> Trained:
    """`lead=False` (a rank > 0 of several, docs/hand.md): the same `fit` in rank 0's `state_dir`,
    writing nothing and selecting nothing. Selection runs in `on_epoch`, on rank 0 only; its patience
    stop reaches the other ranks through `should_stop`, which the loop agrees over all ranks."""
    if state_dir is not None and lead:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
    selection = Selection(Path(state_dir) if state_dir is not None and lead else None, higher, patience)

    def after_epoch(epoch: int, record: dict[str, float]) -> None:
        selection.update(epoch, record[metric], model)
        if on_epoch is not None:
            on_epoch(epoch, record)

    result: FitResult = fit(
        model, train_set, config=LoopConfig(epochs=epochs, batch_size=batch_size, seed=seed,
                                            checkpoint_every=checkpoint_every, **(options or {})),
        make_optimizer=lambda p: torch.optim.Adam([q for q in p if q.requires_grad], lr=lr, amsgrad=amsgrad),
        loss_fn=loss_fn, evaluate=validate, state_dir=state_dir, on_epoch=after_epoch,
        should_stop=lambda: preemption.requested() or selection.exhausted(), collate_fn=collate_fn)
    preempted = result.interrupted and preemption.requested_anywhere()
    if not preempted and lead:
        selection.load_into(model)
    return Trained(model, result.history, int(selection.best["epoch"]), preempted)


# -- pose ----------------------------------------------------------------------------------------
class CropDataset(Dataset):
    """Frames of a FrameTable: normalised crop [1, S, S], PCA target z [k], action label."""

    def __init__(self, table: FrameTable, frames: np.ndarray, targets: np.ndarray) -> None:
        self.crops, self.frames = table.crops, np.asarray(frames)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.labels = torch.as_tensor(table.frame_labels()[self.frames], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        x = torch.from_numpy(np.asarray(self.crops[self.frames[i]], dtype=np.float32))[None]
        return {"x": x, "z": self.targets[i], "label": self.labels[i]}


def build_pose_net(cfg: Any, prior: PCAPrior, film: bool) -> PoseNet:
    h = cfg.hpe
    return PoseNet(prior.decoder(), widths=tuple(h.widths), strides=tuple(h.strides), blocks=int(h.blocks),
                   stem=int(h.stem), fc=int(h.fc), dropout=float(h.dropout), input_size=int(cfg.crop.size),
                   film=film)


@torch.no_grad()
def predict_pose(model: PoseNet, crops: np.ndarray, frames: np.ndarray, cond: np.ndarray | None,
                 cube_mm: float, batch_size: int = 256) -> np.ndarray:
    """[n, 21, 3] CoM-centred joints (mm) of `frames`; `cond` [n, 45] for a FiLM network.
    Computed on the model's device, brought to the CPU once."""
    model.eval()
    device = compute.module_device(model)
    out = []
    for s in range(0, len(frames), batch_size):
        idx = frames[s:s + batch_size]
        x = torch.from_numpy(np.asarray(crops[idx], dtype=np.float32))[:, None]
        a = torch.as_tensor(cond[s:s + batch_size], dtype=torch.float32) if cond is not None else None
        x, a = compute.to_device((x, a), device)
        out.append(model.keypoints(x, a))
    return unstandardise(torch.cat(out).cpu().numpy(), cube_mm)


def centred_gt(table: FrameTable, frames: np.ndarray) -> np.ndarray:
    """[n, 21, 3] raw GT joints minus the (GT) CoM, mm: what pose errors are measured against."""
    j = table.joints[frames].astype(np.float64)
    return j - com_of(j)[:, None, :]


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_ACTIONS, dtype=np.float32)[np.asarray(labels)]


def train_pose(cfg: Any, table: FrameTable, train_frames: np.ndarray, val_frames: np.ndarray, prior: PCAPrior,
               *, state_dir: Path | None = None, on_epoch=None, lead: bool = True) -> Trained:
    """HPE (film off) or FiLM-HPE (film on): MSE in PCA space, Adam, selection on validation mm."""
    film = bool(cfg.film.enabled)
    cube = float(cfg.crop.cube_mm)
    torch.manual_seed(int(cfg.seed))
    model = build_pose_net(cfg, prior, film)
    z = prior.encode(standardise(table.joints[train_frames], com_of(table.joints[train_frames]), cube))
    p = float(cfg.film.cond_dropout)
    val_gt = centred_gt(table, val_frames)
    val_cond = one_hot(table.frame_labels()[val_frames]) if film else None

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator):
        a = condition(batch["label"], p, generator) if film else None
        loss = F.mse_loss(model(batch["x"], a), batch["z"])
        return loss, {}

    def validate(model: nn.Module) -> dict[str, float]:
        pred = predict_pose(model, table.crops, val_frames, val_cond, cube)
        return {"val/mean_mm": float(joint_errors(pred, val_gt).mean())}

    h = cfg.hpe
    return _fit(model, CropDataset(table, train_frames, z), epochs=int(h.epochs), batch_size=int(h.batch_size),
                seed=int(cfg.seed), lr=float(h.lr), amsgrad=False, loss_fn=loss_fn, validate=validate,
                metric="val/mean_mm", higher=False, patience=int(h.patience) if h.get("patience") else None,
                state_dir=state_dir, on_epoch=on_epoch, checkpoint_every=int(cfg.get("checkpoint_every") or 0),
                options=loop_options(cfg), lead=lead)


# -- actions -------------------------------------------------------------------------------------
def pose_features(joints: np.ndarray, kind: str, prior: PCAPrior | None = None, cube_mm: float = 200.0
                  ) -> np.ndarray:
    """[T, 21, 3] mm -> [T, 63] (`gt`: centred on each frame's MMCP, / 100 mm) or [T, k] (`pca`)."""
    j = np.asarray(joints, dtype=np.float64)
    if kind == "pca":
        return prior.encode(standardise(j, j[:, MMCP], cube_mm)).astype(np.float32)
    if kind == "gt":
        return ((j - j[:, MMCP:MMCP + 1]) / 100.0).reshape(len(j), -1).astype(np.float32)
    raise ValueError(f"har.input must be gt or pca, got {kind!r}")


class SequenceDataset(Dataset):
    def __init__(self, features: list[np.ndarray], labels: list[int], max_frames: int) -> None:
        self.x = [torch.as_tensor(f[:max_frames]) for f in features]
        self.y = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]


def collate_sequences(items: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    xs, ys = zip(*items)
    return {"x": pad_sequence(list(xs), batch_first=True), "lengths": torch.as_tensor([len(x) for x in xs]),
            "label": torch.stack(list(ys))}


@torch.no_grad()
def action_scores(model: ActionLSTM, dataset: SequenceDataset, batch_size: int = 64) -> np.ndarray:
    """[n, 45] class probabilities per sequence (computed on the model's device)."""
    model.eval()
    device = compute.module_device(model)
    out = []
    for s in range(0, len(dataset), batch_size):
        batch = collate_sequences([dataset[i] for i in range(s, min(len(dataset), s + batch_size))])
        # lengths stay on the CPU: packing reads them there
        out.append(model(compute.to_device(batch["x"], device), batch["lengths"]).exp())
    return torch.cat(out).cpu().numpy()


def train_actions(cfg: Any, train_set: SequenceDataset, val_set: SequenceDataset, input_dim: int, *,
                  state_dir: Path | None = None, on_epoch=None, lead: bool = True) -> Trained:
    """The LSTM on pose sequences: NLL, Adam (amsgrad), selection on validation top-1."""
    torch.manual_seed(int(cfg.seed))
    model = ActionLSTM(input_dim, int(cfg.har.hidden))

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator):
        out = model(batch["x"], batch["lengths"])
        return F.nll_loss(out, batch["label"]), {"top1": (out.argmax(1) == batch["label"]).float().mean().item()}

    def validate(model: nn.Module) -> dict[str, float]:
        return {"val/" + k.split("/")[1]: v for k, v in
                action_summary(action_scores(model, val_set), val_set.y.numpy()).items()}

    h = cfg.har
    return _fit(model, train_set, epochs=int(h.epochs), batch_size=int(h.batch_size), seed=int(cfg.seed),
                lr=float(h.lr), amsgrad=True, loss_fn=loss_fn, validate=validate, metric="val/top1", higher=True,
                patience=None, state_dir=state_dir, on_epoch=on_epoch,
                checkpoint_every=int(cfg.get("checkpoint_every") or 0), collate_fn=collate_sequences,
                options=loop_options(cfg), lead=lead)

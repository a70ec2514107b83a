"""The hand family's job (jobs/hand.py, the launcher's tasks): `task` = hpe | har | eval | data.

hpe / har: one run in the results store on the shared resumable loop: protocol -> validation split
-> PCA prior fitted on the training keypoints -> training with selection on validation -> test
metrics (summary keys hpe/mean_mm, hpe/pck_auc, hpe/fs_auc or har/top1, har/top3), curves.parquet,
predictions.parquet, the selected weights and the prior. A preemption signal checkpoints and
requeues; the resumed run ends with the same results; a completed run is a no-op.
eval: the dependent step after the arrays (evaluate.py). data: the preparation step before them
(handtoy when `data.generate`, then the protocols' crop caches).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from actlab.device import loop_options
from actlab import preemption
from actlab.device import resolve_device
from actlab.families.hand import fpha
from actlab.families.hand.crop import com_of, standardise, unstandardise
from actlab.families.hand.data import FrameTable, frame_table, manifest, protocol_split, sha256_of, validation_split
from actlab.families.hand.metrics import action_summary, joint_errors, pose_summary
from actlab.families.hand.pca import PCAPrior
from actlab.families.hand.train import (SequenceDataset, Trained, action_scores, centred_gt, one_hot,
                                        pose_features, predict_pose, train_actions, train_pose)
from actlab.job import RunSession, file_sha256, run_ranked
from actlab.results import layout
from actlab.results.store import Artifact, RunStore

WEIGHTS, PRIOR = "model.pt", "pca.npz"
log = logging.getLogger(__name__)
TASKS = ("hpe", "har", "eval", "data")


@dataclass
class ProtocolData:
    """A protocol's sequences (train less validation, validation, test) and all their frames."""
    name: str
    train: list[fpha.SequenceRef]
    val: list[fpha.SequenceRef]
    test: list[fpha.SequenceRef]
    table: FrameTable
    manifest_sha256: str

    def frames(self, seqs: list[fpha.SequenceRef]) -> np.ndarray:
        return self.table.frames_of(seqs)


def load_protocol(cfg: DictConfig, with_crops: bool = True, write: bool = True) -> ProtocolData:
    """`write=False` (a follower rank): a missing crop cache is cropped in memory, not written."""
    root, name = Path(cfg.data.root), str(cfg.protocol.name)
    train_all, test = protocol_split(root, name)
    train, val = validation_split(train_all, float(cfg.protocol.val_fraction), int(cfg.seed))
    if cfg.protocol.select_on_test:
        train, val = train_all, test       # the source's protocol: optimistic
    seqs = train_all + test
    table = frame_table(root, name, seqs, float(cfg.crop.cube_mm), int(cfg.crop.size), cfg.data.cache_dir,
                        with_crops=with_crops, write=write)
    return ProtocolData(name, train, val, test, table, sha256_of(manifest(name, seqs, table.starts)))


def fit_prior(cfg: DictConfig, data: ProtocolData) -> PCAPrior:
    """The PCA prior on the standardised keypoints of the training frames only."""
    frames = data.frames(data.train)
    j = data.table.joints[frames]
    return PCAPrior.fit(standardise(j, com_of(j), float(cfg.crop.cube_mm)), int(cfg.pca.k),
                        int(cfg.pca.max_frames), int(cfg.seed))


def reconstruction_floor(prior: PCAPrior, data: ProtocolData, cube_mm: float) -> float:
    """Mean error (mm) of PCA(GT) on the test frames: the best the prior lets the network reach."""
    frames = data.frames(data.test)
    j = data.table.joints[frames]
    y = standardise(j, com_of(j), cube_mm)
    rebuilt = unstandardise(prior.decode(prior.encode(y)), cube_mm)
    return float(joint_errors(rebuilt, centred_gt(data.table, frames)).mean())


def variant(cfg: DictConfig) -> str:
    """The row label of a run's group in tables."""
    if cfg.task == "hpe":
        film = f" + FiLM (p={float(cfg.film.cond_dropout):g})" if cfg.film.enabled else ""
        return f"HPE{film}, D={float(cfg.crop.cube_mm):g} mm"
    if cfg.task == "har":
        return f"HAR ({cfg.har.input} input)"
    return "eval"


def role(cfg: DictConfig) -> str:
    """What the eval step looks a run up by: hpe, film_hpe, har_gt, har_pca."""
    if cfg.task == "hpe":
        return "film_hpe" if cfg.film.enabled else "hpe"
    return f"har_{cfg.har.input}"


def pose_predictions(data: ProtocolData, frames: np.ndarray, errors: np.ndarray) -> pd.DataFrame:
    seq_index = data.table.frame_sequence()[frames]
    starts = data.table.starts[seq_index]
    frame = pd.DataFrame({"sequence": [data.table.sequences[i].path for i in seq_index],
                          "t": frames - starts, "label": data.table.frame_labels()[frames],
                          "mean_mm": errors.mean(axis=1), "max_mm": errors.max(axis=1)})
    return pd.concat([frame, pd.DataFrame(errors, columns=[f"{j}_mm" for j in fpha.JOINTS])], axis=1)


def train_hpe(cfg: DictConfig, data: ProtocolData, state_dir: Path, on_epoch=None,
              lead: bool = True) -> tuple[PCAPrior, Trained]:
    """The prior and the trained pose network (every rank: `lead=False` writes nothing)."""
    prior = fit_prior(cfg, data)
    return prior, train_pose(cfg, data.table, data.frames(data.train), data.frames(data.val), prior,
                             state_dir=state_dir, on_epoch=on_epoch, lead=lead)


def run_hpe(cfg: DictConfig, data: ProtocolData, state_dir: Path, active) -> tuple[dict, list[Artifact]] | None:
    cube = float(cfg.crop.cube_mm)
    prior, trained = train_hpe(cfg, data, state_dir, on_epoch=lambda e, r: active.log(e, r, "epoch"))
    if trained.interrupted:
        return None
    test = data.frames(data.test)
    cond = one_hot(data.table.frame_labels()[test]) if cfg.film.enabled else None   # FiLM: GT action (oracle)
    errors = joint_errors(predict_pose(trained.model, data.table.crops, test, cond, cube), centred_gt(data.table, test))
    best = next(r for r in trained.history if r["epoch"] == trained.best_epoch)
    summary = pose_summary(errors) | {
        f"hpe/joint/{name}_mm": float(v) for name, v in zip(fpha.JOINTS, errors.mean(axis=0))} | {
        "hpe/val_mm": float(best["val/mean_mm"]), "best_epoch": float(trained.best_epoch),
        "epochs_done": float(trained.history[-1]["epoch"]), "pca/floor_mm": reconstruction_floor(prior, data, cube),
        "n_test_frames": float(len(test))}
    return summary, [Artifact(layout.CURVES, pd.DataFrame(trained.history)),
                     Artifact("predictions.parquet", pose_predictions(data, test, errors)),
                     Artifact(WEIGHTS, trained.model.state_dict()), Artifact(PRIOR, prior.to_arrays()),
                     Artifact("pca.json", {"fit_sha256": prior.fit_hash(), "k": prior.k})]


def sequence_set(cfg: DictConfig, data: ProtocolData, seqs: list[fpha.SequenceRef], prior: PCAPrior | None,
                 joints: np.ndarray | None = None) -> SequenceDataset:
    """HAR inputs of `seqs`; `joints` [N, 21, 3] replaces the table's GT (e.g. predicted poses)."""
    source = data.table.joints if joints is None else joints
    pos = {s.path: i for i, s in enumerate(data.table.sequences)}
    feats = [pose_features(source[data.table.starts[pos[s.path]]:data.table.starts[pos[s.path] + 1]],
                           str(cfg.har.input), prior, float(cfg.crop.cube_mm)) for s in seqs]
    return SequenceDataset(feats, [s.label for s in seqs], int(cfg.har.max_frames))


def train_har(cfg: DictConfig, data: ProtocolData, state_dir: Path, on_epoch=None,
              lead: bool = True) -> tuple[PCAPrior | None, Trained]:
    """The prior (PCA input) and the trained action LSTM (every rank: `lead=False` writes nothing)."""
    prior = fit_prior(cfg, data) if cfg.har.input == "pca" else None
    train_set = sequence_set(cfg, data, data.train, prior)
    return prior, train_actions(cfg, train_set, sequence_set(cfg, data, data.val, prior), train_set.x[0].shape[1],
                                state_dir=state_dir, on_epoch=on_epoch, lead=lead)


def run_har(cfg: DictConfig, data: ProtocolData, state_dir: Path, active) -> tuple[dict, list[Artifact]] | None:
    prior, trained = train_har(cfg, data, state_dir, on_epoch=lambda e, r: active.log(e, r, "epoch"))
    if trained.interrupted:
        return None
    test_set = sequence_set(cfg, data, data.test, prior)
    scores = action_scores(trained.model, test_set)
    best = next(r for r in trained.history if r["epoch"] == trained.best_epoch)
    summary = action_summary(scores, test_set.y.numpy()) | {
        "har/val_top1": float(best["val/top1"]), "best_epoch": float(trained.best_epoch),
        "n_test_sequences": float(len(data.test))}
    predictions = pd.DataFrame({"sequence": [s.path for s in data.test], "label": test_set.y.numpy(),
                                "predicted": scores.argmax(1)})
    predictions = pd.concat([predictions, pd.DataFrame(scores, columns=[f"p_{a}" for a in fpha.ACTIONS])], axis=1)
    artifacts = [Artifact(layout.CURVES, pd.DataFrame(trained.history)), Artifact("predictions.parquet", predictions),
                 Artifact(WEIGHTS, trained.model.state_dict())]
    if prior is not None:
        artifacts.append(Artifact(PRIOR, prior.to_arrays()))
    return summary, artifacts


def prepare_data(cfg: DictConfig) -> Path:
    """The preparation step: write handtoy at data.root when `data.generate` (unless a complete one
    is there), then build the crop cache of each of the experiment's protocols at its crop settings,
    so the array's HPE tasks read it instead of each decoding every PNG at once."""
    from actlab.families.hand.handtoy import generate, is_complete

    root = Path(cfg.data.root)
    if cfg.data.generate:
        if is_complete(root, int(cfg.data.seed), int(cfg.data.actions)):
            print(f"{root}: handtoy is complete; not regenerating")
        else:
            generate(root, int(cfg.data.seed), int(cfg.data.actions), int(cfg.data.workers))
    for protocol in [str(p) for p in cfg.protocols]:
        train, test = protocol_split(root, protocol)
        table = frame_table(root, protocol, train + test, float(cfg.crop.cube_mm), int(cfg.crop.size),
                            cfg.data.cache_dir)
        print(f"{protocol}: {len(table.joints)} frames cropped at D={float(cfg.crop.cube_mm):g} mm, "
              f"{int(cfg.crop.size)} px")
    return root


def run(cfg: DictConfig) -> Path | list[Path]:
    from actlab.families.hand import FAMILY

    task = str(cfg.task)
    if task not in TASKS:
        raise ValueError(f"hand: task must be one of {TASKS}, got {task!r}")
    if task == "data":
        return prepare_data(cfg)
    if task == "eval":
        from actlab.families.hand.evaluate import run_eval

        return run_eval(cfg)
    # hpe / har: started as several ranks (torchrun, srun), rank 0 does what one process does, the
    # others train on their shards of every batch and write nothing (docs/hand.md)
    return run_ranked(cfg, FAMILY, _lead, lambda folder: _follow(cfg, folder))


def _load(cfg: DictConfig, lead: bool = True) -> ProtocolData:
    torch.set_num_threads(int(cfg.threads))
    log.info("hand %s: device %s", cfg.task, resolve_device(loop_options(cfg)["device"]))
    return load_protocol(cfg, with_crops=cfg.task == "hpe", write=lead)


def _lead(session: RunSession) -> Path:
    """Rank 0 (or the one process): train, test, write the run."""
    cfg = session.cfg
    task = str(cfg.task)
    data = _load(cfg)
    inputs = {"manifest": data.manifest_sha256,
              "split_file": file_sha256(Path(cfg.data.root) / fpha.SPLIT_FILE)}
    labels = {"variant": variant(cfg), "task": task, "role": role(cfg)}
    with session.running(inputs, labels) as active:
        preemption.install_handlers()
        out = (run_hpe if task == "hpe" else run_har)(cfg, data, session.store.checkpoint_dir, active)
        if out is None:
            raise preemption.Preempted(session.store.folder)
        return active.finish(*out)


def _follow(cfg: DictConfig, folder: Path) -> None:
    """A rank > 0: the same training in rank 0's checkpoint folder, writing nothing."""
    data = _load(cfg, lead=False)
    preemption.install_handlers()
    _, trained = (train_hpe if str(cfg.task) == "hpe" else train_har)(cfg, data, RunStore(folder).checkpoint_dir,
                                                                     lead=False)
    if trained.interrupted:
        raise preemption.Preempted(folder)

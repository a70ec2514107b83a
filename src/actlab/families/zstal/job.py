"""The zstal job: one (data set, class split, seed) run.

identity -> results folder -> inputs (SHA-256 of annotations, info, split lists, CLIP weights) ->
train the class-agnostic detector on the seen classes (the shared resumable loop: SIGUSR2/SIGTERM
-> checkpoint -> requeue -> identical summary) -> name its proposals with CLIP over the unseen
classes -> ActivityNet detection mAP -> predictions.json, eval_gt.json, summary.json,
final_model.pt; status.json last. Diagnostics in the summary: `oracle/*` (GT segments of the test
classes, CLIP-named: the classification ceiling) and `baseline/proposal_*` (uniform sliding windows).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from actlab.device import loop_options
from actlab import preemption
from actlab.device import resolve_device
from actlab.families.zstal.evaluate import THRESHOLDS, Detection, mean_ap, proposal_map
from actlab.families.zstal.infer import Classifier, oracle, predict, sliding_proposals
from actlab.families.zstal.matcher import Weights, set_loss
from actlab.families.zstal.samples import Prepared, collate, prepare
from actlab.families.zstal.text import class_targets, load_clip, read_descriptions
from actlab.job import RunSession, file_sha256, run_ranked
from actlab.results.store import Artifact, RunStore
from actlab.train.loop import LoopConfig, fit

log = logging.getLogger(__name__)


def results_json(dets: list[Detection]) -> dict[str, Any]:
    """ActivityNet results format."""
    results: dict[str, list] = {}
    for d in dets:
        results.setdefault(d.video, []).append({"label": d.label, "score": d.score, "segment": [d.start, d.end]})
    return {"version": "VERSION 1.3", "results": results, "external_data": {}}


def gt_json(prepared: Prepared, subset: str) -> dict[str, Any]:
    """The scored GT, in the annotation format."""
    return {"classes": prepared.test_classes, "database": {
        v.name: {"subset": subset, "duration": v.duration, **({"fps": v.fps} if v.fps else {}),
                 "annotations": [{"segment": [i.start, i.end], "label": i.label} for i in v.instances]}
        for v in prepared.scored.values()}}


def gpu_model(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def classifier(cfg: DictConfig, prepared: Prepared, device: torch.device | str = "cpu"
               ) -> tuple[Classifier, dict[str, Path]]:
    """The RoI classifier; the class texts are encoded on `device`, where its targets stay."""
    clip = cfg.data.clip
    tower = load_clip(clip.model_name, clip.weights, clip.get("config_file"))
    tower.model.to(device)
    files = {"clip_weights": Path(clip.weights)}
    descriptions = None
    if cfg.target == "description":
        descriptions = read_descriptions(cfg.data.descriptions)
        files["descriptions"] = Path(cfg.data.descriptions)
    text = class_targets(tower, prepared.test_classes, cfg.target, descriptions)
    return Classifier(text, prepared.test_classes, tower.logit_scale, bool(cfg.roi.exp_logit_scale),
                      int(cfg.roi.slots), cfg.roi.pool, cfg.fusion, cfg.post.mode, int(cfg.post.topk),
                      cfg.post.nms_iou), files


def train_detector(cfg: DictConfig, model: torch.nn.Module, prepared: Prepared, state_dir: Path | None,
                   on_epoch=None):
    weights = Weights(**{k: float(v) for k, v in cfg.train.loss.items()})

    def loss_fn(model, batch, generator):
        # The loop moved the batch (its target list too) to the model's device; under several ranks
        # `model` is the DDP wrapper, so the loss only calls it (no `model.<attribute>`).
        return set_loss(model(batch["feats"], batch["mask"]), batch["targets"], weights)

    t = cfg.train
    loop = LoopConfig(epochs=int(t.epochs), batch_size=int(t.batch_size), seed=int(cfg.seed),
                      checkpoint_every=int(cfg.checkpoint_every or 0), grad_clip=t.grad_clip,
                      max_minutes=t.get("max_minutes"), **loop_options(cfg))
    return fit(model, prepared.train, config=loop, collate_fn=collate, loss_fn=loss_fn,
               make_optimizer=lambda p: torch.optim.AdamW(p, lr=float(t.lr), weight_decay=float(t.weight_decay)),
               state_dir=state_dir, on_epoch=on_epoch)


def evaluate_all(cfg: DictConfig, model: torch.nn.Module, prepared: Prepared, clf: Classifier
                 ) -> tuple[dict[str, float], list[Detection]]:
    thresholds = THRESHOLDS[cfg.data.kind]
    size = int(cfg.data.rescale_to) if cfg.data.kind == "anet" else int(cfg.data.window.size)
    dets, props = predict(model, prepared.test, clf, size)
    classes = prepared.test_classes
    present = sorted({g.label for g in prepared.gt})
    # a split class without an instance in the scored videos is not scored (the metric's class set is
    # the GT's labels): its predictions go, and test/n_classes < test/n_split_classes says so
    keep = set(present)
    dets = [d for d in dets if d.label in keep]
    summary = {f"test/{k}": v for k, v in mean_ap(prepared.gt, dets, thresholds, present).summary().items()}
    summary |= {f"test/{k}": v for k, v in proposal_map(prepared.gt, props, thresholds).summary("proposal_map").items()}
    summary |= {"test/n_videos": float(len(prepared.scored)), "test/n_classes": float(len(present)),
                "test/n_split_classes": float(len(classes))}
    if cfg.eval.oracle:
        summary |= diagnostics(prepared, clf, thresholds)
    return summary, dets


def diagnostics(prepared: Prepared, clf: Classifier, thresholds) -> dict[str, float]:
    """No detector needed: `oracle/*`, the test-class GT segments named by CLIP (the classification
    ceiling), and `baseline/proposal_*`, uniform sliding windows (the localization floor)."""
    present = sorted({g.label for g in prepared.gt})
    keep = set(present)
    named = [d for d in oracle(prepared.test, prepared.gt, clf) if d.label in keep]
    out = {f"oracle/{k}": v for k, v in mean_ap(prepared.gt, named, thresholds, present).summary().items()}
    base = proposal_map(prepared.gt, sliding_proposals(prepared.test), thresholds)
    return out | {f"baseline/{k}": v for k, v in base.summary("proposal_map").items()}


def run(cfg: DictConfig) -> Path:
    """One run; started as several ranks (torchrun, srun), rank 0 does what one process does and
    the others train the detector on their shards of every batch, writing nothing (docs/zstal.md)."""
    from actlab.families.zstal import FAMILY

    return run_ranked(cfg, FAMILY, _lead, lambda folder: _follow(cfg, folder))


def _prepared(cfg: DictConfig) -> tuple[torch.device, Prepared]:
    """The device and the prepared data, the same on every rank (reads only)."""
    torch.set_num_threads(int(cfg.threads))
    device = resolve_device(loop_options(cfg)["device"])
    log.info("zstal: device %s", device)
    return device, prepare(cfg.data, int(cfg.split_ratio), int(cfg.split_id), cfg.eval.videos,
                           cfg.data.get("max_videos"))


def detector(cfg: DictConfig, prepared: Prepared, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(int(cfg.seed))
    model = instantiate(cfg.model, in_dim=int(prepared.train.feats[next(iter(prepared.train.feats))].shape[1]))
    return model.to(device)


def _lead(session: RunSession) -> Path:
    """Rank 0 (or the one process): train, name the proposals, score, write the run."""
    cfg = session.cfg
    device, prepared = _prepared(cfg)
    clf, clip_files = classifier(cfg, prepared, device)
    inputs = {k: file_sha256(p) for k, p in {**prepared.files, **clip_files}.items()}
    labels = {"dataset": str(cfg.data.name), "kind": str(cfg.data.kind), "split_ratio": str(cfg.split_ratio), "excluded": ",".join(prepared.excluded), "gpu": gpu_model(device)}
    with session.running(inputs, labels) as active:
        model = detector(cfg, prepared, device)
        preemption.install_handlers()
        result = train_detector(cfg, model, prepared, session.store.checkpoint_dir,
                                on_epoch=lambda epoch, record: active.log(epoch, record, "epoch"))
        if result.interrupted:
            raise preemption.Preempted(session.store.folder)
        summary, dets = evaluate_all(cfg, model, prepared, clf)
        summary |= {"train/loss": float(result.history[-1]["train/loss"]), "train/epochs": float(result.epochs_done)}
        return active.finish(summary, [Artifact("predictions.json", results_json(dets)),
                                       Artifact("eval_gt.json", gt_json(prepared, cfg.data.test_subset)),
                                       Artifact("final_model.pt", {k: v.cpu() for k, v in model.state_dict().items()})])


def _follow(cfg: DictConfig, folder: Path) -> None:
    """A rank > 0: the same detector training in rank 0's checkpoint folder, writing nothing (the
    CLIP naming and the scoring after training are rank 0's)."""
    device, prepared = _prepared(cfg)
    model = detector(cfg, prepared, device)
    preemption.install_handlers()
    if train_detector(cfg, model, prepared, RunStore(folder).checkpoint_dir).interrupted:
        raise preemption.Preempted(folder)

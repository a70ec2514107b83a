"""The eval step (task=eval, after the HPE and HAR arrays): for each protocol and seed of the
experiment, the modes of Table 1 from the trained runs of that seed in the results store.

  hpe           (a) HPE standalone (film-off run)
  har_gt        (b) HAR on GT pose (oracle)
  hpe_har       (c) HPE -> HAR (HAR trained on GT, fed the film-off HPE's poses; no joint training)
  film_gt       (d) FiLM-HPE with the GT action (oracle)
  film_uniform  (e) FiLM-HPE with the uniform 1/45 condition
  film_2pass    (f) HPE -> HAR -> p(a) per sequence -> FiLM-HPE(p(a)) -> HAR
Each (protocol, seed) is one eval run (group `<experiment>-<hash of {task: eval}>`, unit the
protocol) with summary keys `eval/<mode>/hpe/...` and `eval/<mode>/har/...`, labelled with the
run ids it read (`sources`), so a sweep's report takes exactly the eval runs of its own runs. Its
submit time is the latest of its sources': running the step again is a no-op.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from actlab.device import loop_options
from actlab.device import resolve_device
from actlab.errors import DataError
from actlab.families.hand.fpha import NUM_ACTIONS
from actlab.families.hand.metrics import THRESHOLDS, action_summary, frame_success, joint_errors, pck, pose_summary
from actlab.families.hand.models import ActionLSTM
from actlab.families.hand.pca import PCAPrior
from actlab.families.hand.train import action_scores, build_pose_net, centred_gt, one_hot, predict_pose
from actlab.identity import RunIdentity
from actlab.job import RunSession
from actlab.results import layout
from actlab.results.store import Artifact, RunRecord, RunStore, iter_runs

log = logging.getLogger(__name__)
MODES = ("hpe", "har_gt", "hpe_har", "film_gt", "film_uniform", "film_2pass")
# the grid point each role's run comes from (names the folder a missing run is expected in)
ROLE_POINTS = {"hpe": {"task": "hpe", "film.enabled": False}, "film_hpe": {"task": "hpe", "film.enabled": True},
               "har_gt": {"task": "har", "har.input": "gt"}}
EVAL_POINT = {"task": "eval"}


def find_source(runs: list[RunRecord], results: str, experiment: str, protocol: str, seed: int, role: str
                ) -> RunRecord:
    """The latest completed run of `role` for (protocol, seed); DataError naming where it should be."""
    found = [r for r in runs
             if r.labels.get("role") == role and r.identity.unit == protocol and r.identity.seed == seed]
    if not found:
        group = RunIdentity.for_point(experiment, ROLE_POINTS[role], protocol, seed, "x").group
        raise DataError(f"eval: no completed {role} run for protocol {protocol}, seed {seed}: expected "
                        f"{Path(results) / experiment / group}/{group}-u{protocol}-s{seed}-<submitted>/")
    return max(found, key=lambda r: (r.identity.submitted, r.identity.run_id))


def _run_cfg(record: RunRecord) -> DictConfig:
    return OmegaConf.create(yaml.safe_load((record.folder / layout.CONFIG).read_text()))


def load_pose_net(record: RunRecord):
    cfg = _run_cfg(record)
    store = RunStore(record.folder)
    prior = PCAPrior.from_arrays(store.read("pca.npz"))
    model = build_pose_net(cfg, prior, bool(cfg.film.enabled))
    model.load_state_dict(store.read("model.pt"))
    return model.eval(), cfg


def load_action_net(record: RunRecord) -> ActionLSTM:
    cfg = _run_cfg(record)
    model = ActionLSTM(63, int(cfg.har.hidden))
    model.load_state_dict(RunStore(record.folder).read("model.pt"))
    return model.eval()


def evaluate_modes(cfg: DictConfig, data, hpe, film_hpe, har) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(summary, per-frame errors, PCK/FS curves) of the six modes on the protocol's test set."""
    from actlab.families.hand.job import sequence_set

    cube = float(cfg.crop.cube_mm)
    table = data.table
    test = data.frames(data.test)
    gt = centred_gt(table, test)
    com = table.joints[test][:, 3].astype(np.float64)
    labels = np.array([s.label for s in data.test])
    frame_seq = np.repeat(np.arange(len(data.test)), [table.starts[i + 1] - table.starts[i] for i in
                                                      [table.sequences.index(s) for s in data.test]])
    har_cfg = OmegaConf.merge(cfg, {"har": {"input": "gt"}})

    def har_scores(pred_centred: np.ndarray | None) -> np.ndarray:
        joints = None
        if pred_centred is not None:
            joints = table.joints.astype(np.float64).copy()
            joints[test] = pred_centred + com[:, None, :]
        return action_scores(har, sequence_set(har_cfg, data, data.test, None, joints))

    poses = {"hpe": predict_pose(hpe, table.crops, test, None, cube)}
    scores = {"har_gt": har_scores(None), "hpe_har": None}
    scores["hpe_har"] = har_scores(poses["hpe"])
    poses["film_gt"] = predict_pose(film_hpe, table.crops, test, one_hot(labels[frame_seq]), cube)
    poses["film_uniform"] = predict_pose(film_hpe, table.crops, test,
                                         np.full((len(test), NUM_ACTIONS), 1 / NUM_ACTIONS, np.float32), cube)
    p_action = scores["hpe_har"].astype(np.float32)          # one distribution per sequence (softmax)
    poses["film_2pass"] = predict_pose(film_hpe, table.crops, test, p_action[frame_seq], cube)
    scores["film_2pass"] = har_scores(poses["film_2pass"])
    poses["hpe_har"] = poses["hpe"]
    summary: dict[str, float] = {}
    errors, curves = {}, []
    for mode in MODES:
        if mode in poses:
            errors[mode] = joint_errors(poses[mode], gt)
            summary |= pose_summary(errors[mode], f"eval/{mode}/hpe/")
            if mode != "hpe_har":
                curves.append(pd.DataFrame({"mode": mode, "threshold_mm": THRESHOLDS,
                                            "pck": pck(errors[mode]), "fs": frame_success(errors[mode])}))
        if mode in scores:
            summary |= action_summary(scores[mode], labels, f"eval/{mode}/har/")
    frames = pd.DataFrame({"sequence": [data.test[i].path for i in frame_seq], "label": labels[frame_seq]}
                          | {f"{m}_mean_mm": e.mean(axis=1) for m, e in errors.items()}
                          | {f"{m}_max_mm": e.max(axis=1) for m, e in errors.items()})
    return summary, frames, pd.concat(curves, ignore_index=True)


def run_eval(cfg: DictConfig) -> list[Path]:
    from actlab.families.hand import FAMILY
    from actlab.families.hand.job import load_protocol

    results, experiment = str(cfg.paths.results), str(cfg.experiment)
    device = resolve_device(loop_options(cfg)["device"])
    log.info("hand eval: device %s", device)
    runs = [r for r in iter_runs(results, experiment) if r.identity.family == FAMILY.name]
    done = []
    for protocol in [str(p) for p in cfg.protocols]:
        for seed in [int(s) for s in cfg.seeds]:
            sources = {role: find_source(runs, results, experiment, protocol, seed, role) for role in ROLE_POINTS}
            ecfg = copy.deepcopy(cfg)
            OmegaConf.set_struct(ecfg, False)
            ecfg.task, ecfg.seed, ecfg.protocol.name = "eval", seed, protocol
            ecfg.overrides, ecfg.group = dict(EVAL_POINT), None
            ecfg.submitted = max(r.identity.submitted for r in sources.values())
            # the data and crop settings of the pose runs (the experiment's defaults otherwise)
            hpe_cfg = _run_cfg(sources["hpe"])
            ecfg.crop, ecfg.data = hpe_cfg.crop, hpe_cfg.data
            session = RunSession(ecfg, FAMILY)
            with session.lease():
                if session.store.is_completed():
                    print(f"{session.store.folder}: already completed, nothing to do")
                    done.append(session.store.folder)
                    continue
                data = load_protocol(ecfg)
                labels = {"variant": "eval", "task": "eval", "role": "eval",
                          "sources": ",".join(sources[r].identity.run_id for r in ROLE_POINTS)}
                with session.running({"manifest": data.manifest_sha256}, labels) as active:
                    hpe = load_pose_net(sources["hpe"])[0].to(device)
                    film_hpe = load_pose_net(sources["film_hpe"])[0].to(device)
                    har = load_action_net(sources["har_gt"]).to(device)
                    summary, frames, curves = evaluate_modes(ecfg, data, hpe, film_hpe, har)
                    done.append(active.finish(summary, [
                        Artifact("predictions.parquet", frames), Artifact(layout.CURVES, curves),
                        Artifact("sources.json", {r: str(sources[r].folder) for r in ROLE_POINTS})]))
    return done

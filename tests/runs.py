"""Run folders and offline W&B mirrors for the postprocessing tests, written by the real writers:
`RunStore.begin` / `finish` (artifacts included) and `WandbMirror` in offline mode, so a change to
either shows up as a difference between the store and the W&B back ends.

`write_run` is family-agnostic (labels, inputs, summary, artifacts); `continual_run` and
`continual_mirror` fill in what a continual stream run records (actlab.families.continual.artifacts).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from actlab.families.continual import artifacts as ca
from actlab.identity import RunIdentity
from actlab.results import layout
from actlab.results.store import Artifact, RunStore
from actlab.results.wandb_mirror import WandbMirror

PRETRAINED_SHA = "sha-pretrained"


def write_run(results_root: str | Path, identity: RunIdentity, *, labels: dict[str, str] | None = None,
              inputs: dict[str, str] | None = None, summary: dict[str, float] | None = None,
              artifacts: list[Artifact] = (), state: str = layout.COMPLETED,
              config: dict[str, Any] | None = None) -> Path:
    """A run folder as a job leaves it: `state` completed (artifacts + summary + status last),
    failed (status failed) or running (begun, never finished)."""
    store = RunStore.for_identity(identity, results_root)
    store.begin(identity, yaml.safe_dump(config or {"experiment": identity.experiment}), inputs or {}, labels or {})
    if state == layout.COMPLETED:
        store.finish(dict(summary or {}), list(artifacts))
    elif state == "failed":
        store.fail(RuntimeError("killed by the test"))
    elif state != "running":
        raise ValueError(f"state {state!r}: completed | failed | running")
    return store.folder


def continual_labels(variant: str, reference_group: str = "") -> dict[str, str]:
    return {ca.VARIANT: variant, ca.REFERENCE_GROUP: reference_group}


def continual_inputs(stream_sha256: str) -> dict[str, str]:
    return {ca.STREAM_INPUT: stream_sha256, ca.PRETRAINED_INPUT: PRETRAINED_SHA}


def continual_run(results_root: str | Path, identity: RunIdentity, variant: str, summary: dict[str, float],
                  stream_sha256: str, reference_group: str = "", predictions: pd.DataFrame | None = None,
                  forgetting: pd.DataFrame | None = None, transfer: dict[str, dict[str, Any]] | None = None,
                  clips: list[dict] | None = None, state: str = layout.COMPLETED) -> Path:
    """A continual stream run. `transfer`: stream_user -> {"stream_sha256", "metrics"}."""
    arts = [Artifact(ca.STREAM, {"user": identity.unit, "sha256": stream_sha256, "stats": {},
                                        "clips": list(clips or [])})]
    if predictions is not None:
        arts.append(Artifact(ca.PREDICTIONS, predictions))
    if forgetting is not None:
        arts.append(Artifact(ca.FORGETTING, forgetting))
    for stream_user, t in (transfer or {}).items():
        arts.append(Artifact(ca.transfer(stream_user),
                             {"model_user": identity.unit, "stream_user": stream_user} | t))
    return write_run(results_root, identity, labels=continual_labels(variant, reference_group),
                     inputs=continual_inputs(stream_sha256), summary=summary, artifacts=arts, state=state,
                     config={"experiment": identity.experiment, "method": {"name": variant}})


def write_mirror(wandb_dir: str | Path, identity: RunIdentity, labels: dict[str, str], inputs: dict[str, str],
                 summary: dict[str, float] | None, exit_code: int = 0, cfg: dict[str, Any] | None = None) -> None:
    """One offline W&B run written by `WandbMirror` itself (WANDB_MODE=offline while it runs)."""
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline"
    try:
        mirror = WandbMirror(identity, cfg or {}, inputs, labels, wandb_dir, mode="offline")
        mirror.log(0, {"online/action/balanced_top1": 0.0})   # a running value; the summary overwrites it
        mirror.finish(summary, exit_code=exit_code)
    finally:
        if old is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = old


def continual_mirror(wandb_dir: str | Path, identity: RunIdentity, variant: str, summary: dict[str, float] | None,
                     stream_sha256: str, reference_group: str = "", exit_code: int = 0) -> None:
    write_mirror(wandb_dir, identity, continual_labels(variant, reference_group), continual_inputs(stream_sha256),
                 summary, exit_code, cfg={"method": {"name": variant}})

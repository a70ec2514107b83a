"""A job that only records what it received: checks a cluster profile end to end in seconds.

`make grid EXP=<experiment> CLUSTER=<profile> ARGS=job=actlab.launch.echo_job:run` runs every
task of a grid through the real submission path (manifest, snapshot, arrays, logs) and writes,
in each run folder, identity.json, echo.json (the values the task saw, the Slurm variables and
the code it imported) and status.json. `echo_fail_unless: <path>` in the config makes a task fail
while that file does not exist, for the users in `echo_fail_users` (all when unset): to exercise
status and resubmit.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import actlab
from actlab.atomic import atomic_write_json
from actlab.identity import RunIdentity
from actlab.results import layout

_ENV = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
        "CUDA_VISIBLE_DEVICES", "PYTHONPATH")


def run(cfg: DictConfig) -> Path:
    overrides = OmegaConf.to_container(cfg.overrides, resolve=True)
    ident = RunIdentity.for_point(cfg.experiment, overrides, str(cfg.user), int(cfg.seed),
                                  str(cfg.submitted), str(cfg.code))
    if cfg.get("group") and cfg.group != ident.group:
        raise ValueError(f"group {cfg.group} differs from the hash of the overrides ({ident.group})")
    folder = ident.folder(cfg.paths.results)
    atomic_write_json(folder / layout.IDENTITY, ident.to_dict())
    fail_unless = cfg.get("echo_fail_unless")
    fail_users = cfg.get("echo_fail_users")
    chosen = fail_users is None or str(cfg.user) in {str(u) for u in fail_users}
    if fail_unless and chosen and not Path(fail_unless).exists():
        atomic_write_json(folder / layout.STATUS, {"state": "failed"})
        raise RuntimeError(f"echo job: failing on purpose, {fail_unless} does not exist")
    time.sleep(float(cfg.get("echo_sleep_s", 0) or 0))
    atomic_write_json(folder / "echo.json", {
        "overrides": overrides, "user": str(cfg.user), "seed": int(cfg.seed),
        "submitted": str(cfg.submitted), "group": str(cfg.group), "code": str(cfg.code),
        "actlab_file": actlab.__file__, "env": {k: os.environ.get(k) for k in _ENV}})
    atomic_write_json(folder / layout.STATUS, {"state": layout.COMPLETED})
    return folder

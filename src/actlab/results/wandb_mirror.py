"""W&B mirror of a run (the results store stays the source of truth).

Contract (team brief): `wandb.init(id=identity.run_id, group=identity.group, project="actlab",
dir=paths.wandb, mode=WANDB_MODE or "offline", resume="allow", config={identity, inputs, labels, cfg})`
(the same identity, input hashes and labels as the run's identity.json); `log` of running metrics
(per batch or per epoch); at the end `summary.update(summary.json)`. The fixed id
plus resume="allow" makes a requeued job continue the same run. No API key is ever written here:
online mode uses whatever the user's environment / `wandb login` provides.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from actlab.identity import RunIdentity

PROJECT = "actlab"
log = logging.getLogger(__name__)


class WandbMirror:
    def __init__(self, identity: RunIdentity, cfg: dict[str, Any], inputs: dict[str, str],
                 labels: dict[str, str], wandb_dir: str | Path, mode: str | None = None) -> None:
        import wandb  # imported here: only runs that mirror pay for it

        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(id=identity.run_id, group=identity.group, project=PROJECT,
                              name=identity.run_id, dir=str(wandb_dir),
                              mode=os.environ.get("WANDB_MODE") or mode or "offline", resume="allow",
                              config={"identity": identity.to_dict(), "inputs": dict(inputs),
                                      "labels": dict(labels), "cfg": cfg},
                              settings=wandb.Settings(silent=True))

    # The mirror must never cost a run its results: Slurm's SIGTERM (scontrol requeue, preemption)
    # reaches every process of the job step, wandb's service process included, and a later call
    # then raises. The run goes on, checkpoints and requeues; the mirror switches itself off.
    def log(self, step: int, values: dict[str, float], step_name: str = "batch") -> None:
        if self.run is not None:
            self._guard(lambda: self.run.log(dict(values) | {step_name: step}))

    def finish(self, summary: dict[str, float] | None = None, exit_code: int = 0) -> None:
        if self.run is None:
            return
        if summary:
            self._guard(lambda: self.run.summary.update(summary))
        if self.run is not None:
            self._guard(lambda: self.run.finish(exit_code=exit_code))
        self.run = None

    def _guard(self, call) -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - any failure of the mirror, see above
            log.warning("W&B mirror switched off for the rest of this job: %s: %s", type(e).__name__, e)
            self.run = None

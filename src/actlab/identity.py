"""Run identity: fixed once at submit time and carried unchanged to every place a run shows up.

The same identity names the results folder, the Slurm job name, the log files and the W&B run
id, so a LaTeX cell can be traced back to its job. It is built on the submitting machine and
passed to tasks as literal values (never re-derived from a clock inside a task).
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def submit_timestamp(now: datetime | None = None) -> str:
    """UTC, second resolution, filesystem- and W&B-safe: 20261124T200501Z."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def group_hash(overrides: dict[str, Any]) -> str:
    """Short stable hash of a grid point (its overrides), independent of key order."""
    blob = json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def code_version(root: Path | None = None) -> str:
    """`git describe`-like commit id of the code, with `-dirty` when there are local changes."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=root, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class RunIdentity:
    experiment: str          # e.g. "egotoy_finetune"
    group: str               # grid-point id: f"{experiment}-{group_hash(overrides)}"
    unit: str | None         # the replication unit (continual: the user id); None when the family has none
    seed: int
    submitted: str           # submit_timestamp() of the submission
    code: str = "unknown"    # code_version() at submit time
    overrides: dict[str, Any] = field(default_factory=dict)  # the grid point's own values
    family: str = ""         # actlab.families name of the job

    @property
    def run_id(self) -> str:
        """The W&B run id, Slurm job-name suffix and folder name (W&B allows [A-Za-z0-9_-])."""
        unit = "" if self.unit is None else f"-u{self.unit}"
        raw = f"{self.group}{unit}-s{self.seed}-{self.submitted}"
        return _SAFE.sub("_", raw).replace(".", "_")

    def folder(self, results_root: str | Path) -> Path:
        """results/<experiment>/<group>/<run_id>/"""
        return Path(results_root) / _SAFE.sub("_", self.experiment) / _SAFE.sub("_", self.group) / self.run_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunIdentity":
        """From `to_dict()`, or from identity.json (which adds the run's `inputs` and `labels`)."""
        keys = {"experiment", "group", "unit", "seed", "submitted", "code", "overrides", "family"}
        unknown = set(d) - keys - {"run_id", "inputs", "labels"}
        if unknown:
            raise ValueError(f"unknown identity keys: {sorted(unknown)}")
        missing = {"experiment", "group", "unit", "seed", "submitted"} - set(d)
        if missing:
            raise ValueError(f"identity is missing keys: {sorted(missing)}")
        unit = None if d["unit"] is None else str(d["unit"])
        return cls(**{k: d[k] for k in keys if k in d} | {"unit": unit, "seed": int(d["seed"])})

    @classmethod
    def for_point(cls, experiment: str, overrides: dict[str, Any], unit: str | None, seed: int,
                  submitted: str, code: str = "unknown", family: str = "") -> "RunIdentity":
        return cls(experiment=experiment, group=f"{experiment}-{group_hash(overrides)}",
                   unit=None if unit is None else str(unit), seed=int(seed), submitted=submitted,
                   code=code, overrides=dict(overrides), family=family)

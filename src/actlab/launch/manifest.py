"""A sweep folder: manifest (array row -> grid point, unit, identity, run folder), code snapshot, jobs.

sweeps/<experiment>/<submitted>-<random>/
  manifest.json   fixed at submit time: rows, identities, the literal values every task gets; a
                  row `reused` is a completed run of the shared reference group (launch/reference.py)
                  that this sweep pairs against but never submits
  code/src, code/configs   the code the tasks import (PYTHONPATH), copied at submit time
  code/jobs, code/postprocess   the scripts the pipeline's transfer / aggregation jobs run
  sweep.json      experiment, family, results root, units, reference group: what
                  postprocess/to_latex.py --sweep reads
  git.json, git.diff       commit and uncommitted changes of the submitting tree
  jobs.json       each submission of rows (Slurm array id or local run) -> the rows it runs
  logs/           per-task logs, %A_%a; per-row logs %A_%a_row<I>.out of tasks of several rows
Nothing written here may hold a secret: `scrub` removes the values of secret-looking variables.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actlab.atomic import atomic_write_json, atomic_write_text, read_json

MANIFEST = "manifest.json"
JOBS = "jobs.json"
# A whole `_`-separated part of the name: WANDB_API_KEY, GITHUB_TOKEN, but not TOKENIZERS_PARALLELISM
# (open_clip sets it to "false", which scrubbing turned every JSON false into ***).
_SECRET_NAME = re.compile(r"(^|_)(API_KEY|TOKEN|SECRET|PASSWORD|PASSWD)(_|$)", re.IGNORECASE)


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret (WANDB_API_KEY, ...)."""
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 4]


def scrub(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text


@dataclass(frozen=True)
class Row:
    index: int
    overrides: dict[str, Any]
    unit: str | None
    seed: int
    identity: dict[str, Any]      # RunIdentity.to_dict()
    run_folder: str
    reused: bool = False          # a completed run of a shared reference group: not submitted by this sweep


@dataclass
class Manifest:
    experiment: str
    family: str                   # actlab.families name: its job, config root and primary config
    submitted: str
    code: str
    job: str                      # "module:function" called with the composed config
    config_dir: str               # configs/<config_dir>/ of the code snapshot
    config_name: str
    reference_group: str | None
    literals: dict[str, Any]      # values set on every task's config (paths.root, ...)
    rows: list[Row]
    cluster: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, Any] = field(default_factory=dict)   # applied to every row (not its identity)
    pythonpath: list[str] = field(default_factory=list)            # added to sys.path of every task
    reference_identity: dict[str, Any] | None = None                # what identifies a shared reference group

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        return cls(**(d | {"rows": [Row(**r) for r in d["rows"]]}))

    def row(self, index: int) -> Row:
        if not 0 <= index < len(self.rows):
            raise ValueError(f"manifest has rows 0..{len(self.rows) - 1}, not {index}")
        return self.rows[index]


def sweep_dir(path: str | Path) -> Path:
    """The sweep folder of a manifest path or a sweep folder."""
    path = Path(path)
    return path.parent if path.name == MANIFEST else path


def code_dir(sweep: Path) -> Path:
    return sweep / "code"


def logs_dir(sweep: Path) -> Path:
    return sweep / "logs"


def stream_log(sweep: Path, job: str, index: int) -> Path:
    """The log of one row of a task of several rows (resources.streams_per_gpu > 1): `<job>_row<I>.out`."""
    return logs_dir(sweep) / f"{job}_row{index}.out"


def new_sweep(sweeps_root: str | Path, experiment: str, submitted: str) -> Path:
    """A fresh folder; the random suffix keeps two submissions of the same second apart."""
    parent = Path(sweeps_root) / experiment
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{submitted}-{secrets.token_hex(3)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def default_sweeps_root() -> Path:
    """Where `make` finds sweeps without SWEEP=: paths/default.yaml's `sweeps` ($ACTLAB_ROOT, else here)."""
    return Path(os.environ.get("ACTLAB_ROOT") or os.getcwd()) / "sweeps"


def latest_sweep(sweeps_root: str | Path) -> Path:
    """The sweep submitted last (folder names start with the submit timestamp), over all experiments:
    what `make status`, `make resubmit` and `make tables` act on without SWEEP=."""
    found = sorted(Path(sweeps_root).glob(f"*/*/{MANIFEST}"), key=lambda p: p.parent.name)
    if not found:
        raise ValueError(f"no sweep with a {MANIFEST} under {sweeps_root}: run `make run` or `make grid` first, "
                         f"or give SWEEP=<sweep folder>")
    return found[-1].parent


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    return out.stdout if out.returncode == 0 else ""


def snapshot_code(repo: Path, config_dir: Path, sweep: Path) -> dict[str, Any]:
    """Copy src/ and the config dir under the sweep; record the commit and the uncommitted diff."""
    dest = code_dir(sweep)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(repo / "src", dest / "src", ignore=ignore)
    shutil.copytree(config_dir, dest / "configs", ignore=ignore)
    for scripts in ("jobs", "postprocess"):
        if (repo / scripts).is_dir():
            shutil.copytree(repo / scripts, dest / scripts, ignore=ignore)
    commit = _git(repo, "rev-parse", "HEAD").strip() or "unknown"
    diff = _git(repo, "diff", "HEAD")
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard").split()
    atomic_write_text(sweep / "git.diff", scrub(diff))
    info = {"commit": commit, "dirty": bool(diff or untracked), "diff": "git.diff",
            "untracked": untracked, "repo": str(repo)}
    atomic_write_json(sweep / "git.json", info)
    return info


def write_manifest(sweep: Path, manifest: Manifest) -> Path:
    text = scrub(json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n")
    return atomic_write_text(sweep / MANIFEST, text)


def write_sweep_info(sweep: Path, manifest: Manifest, results_root: str | Path) -> Path:
    """sweep.json: what the post-processing (`to_latex.py --sweep`) needs to find the runs."""
    units = [u for u in dict.fromkeys(r.unit for r in manifest.rows) if u is not None]
    return atomic_write_json(sweep / "sweep.json", {
        "experiment": manifest.experiment, "family": manifest.family, "results": str(results_root),
        "units": units, "reference_group": manifest.reference_group,
        "groups": sorted({r.identity["group"] for r in manifest.rows})})


def load_manifest(path: str | Path) -> Manifest:
    path = sweep_dir(path) / MANIFEST
    try:
        return Manifest.from_dict(read_json(path))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable manifest ({e})") from e


def load_jobs(sweep: Path) -> list[dict[str, Any]]:
    path = sweep / JOBS
    return read_json(path) if path.exists() else []


def append_jobs(sweep: Path, entries: list[dict[str, Any]]) -> None:
    """One entry per submission: {"kind": "slurm"|"local", "job_id", "rows": [...], ...}."""
    atomic_write_json(sweep / JOBS, load_jobs(sweep) + entries)

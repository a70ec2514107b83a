"""The results store: one folder per run, every file written atomically, status.json last.

Folder = `RunIdentity.folder(paths.results)`; common file names in `actlab.results.layout`, a
family's own files are typed `Artifact`s. A run is complete iff status.json says
{"state": "completed"}; a crashed or preempted run leaves status "running" or "failed" (its
summary may be absent or stale, and readers must ignore it).

identity.json holds what listing needs: the identity (family included), the named SHA-256 of every
input the run read (`inputs`: stream manifest, annotation files, weights) and a few `labels` the
family's aggregation groups by (e.g. the method name). So `iter_runs` reads three small files per
run, never a family's artifacts.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from actlab.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from actlab.errors import DataError
from actlab.identity import RunIdentity, submit_timestamp
from actlab.results import layout

ARTIFACT_KINDS = (".parquet", ".npz", ".json", ".pt")


@dataclass(frozen=True)
class Artifact:
    """A result file of a run; its kind is its suffix: .parquet (DataFrame), .npz (dict of arrays),
    .json (JSON value), .pt (anything torch.save takes, e.g. a state_dict)."""
    name: str                 # path inside the run folder, e.g. "predictions.parquet", "transfer/68.json"
    value: Any

    def __post_init__(self) -> None:
        if Path(self.name).suffix not in ARTIFACT_KINDS or Path(self.name).is_absolute() or ".." in Path(self.name).parts:
            raise ValueError(f"artifact {self.name!r}: a relative path ending in one of {ARTIFACT_KINDS}")

    def write(self, folder: Path) -> Path:
        path, kind = Path(folder) / self.name, Path(self.name).suffix
        if kind == ".parquet":
            return atomic_write(path, lambda p: pd.DataFrame(self.value).to_parquet(p, index=False))
        if kind == ".npz":
            return atomic_write(path, lambda p: _savez(p, self.value))
        if kind == ".json":
            return atomic_write_json(path, self.value)
        import torch  # only runs that save tensors pay for the import

        buf = io.BytesIO()
        torch.save(self.value, buf)
        return atomic_write_bytes(path, buf.getvalue())


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class RunStore:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_identity(cls, identity: RunIdentity, results_root: str | Path) -> "RunStore":
        return cls(identity.folder(results_root))

    # -- state --------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.folder / layout.CHECKPOINT_DIR

    def status(self) -> dict[str, Any] | None:
        path = self.folder / layout.STATUS
        return read_json(path) if path.exists() else None

    def is_completed(self) -> bool:
        status = self.status()
        return bool(status) and status.get("state") == layout.COMPLETED

    def _status(self, state: str, **extra: Any) -> None:
        atomic_write_json(self.folder / layout.STATUS, {"state": state, "time": submit_timestamp()} | extra)

    # -- writing ------------------------------------------------------------------------------
    def begin(self, identity: RunIdentity, config_yaml: str, inputs: dict[str, str],
              labels: dict[str, str] | None = None) -> None:
        """Start (or restart) a run: identity + input hashes + labels, config, status "running".

        A folder that already holds another identity, or the same run with other inputs (the data
        changed since it started), is an error naming what differs: its files are left as they are.
        """
        path = self.folder / layout.IDENTITY
        record = identity.to_dict() | {"inputs": dict(inputs), "labels": dict(labels or {})}
        if path.exists():
            old = read_json(path)
            if {k: v for k, v in old.items() if k not in ("inputs", "labels")} != identity.to_dict():
                raise DataError(f"{path} holds another run's identity; refusing to overwrite it")
            changed = sorted(k for k in set(old.get("inputs", {})) | set(inputs)
                             if old.get("inputs", {}).get(k) != inputs.get(k))
            if changed:
                raise DataError(f"{path}: input(s) {changed} changed since this run started "
                                f"({ {k: old.get('inputs', {}).get(k) for k in changed} } -> "
                                f"{ {k: inputs.get(k) for k in changed} })")
        atomic_write_json(path, record)
        atomic_write_text(self.folder / layout.CONFIG, config_yaml)
        self._status("running")

    def write(self, artifact: Artifact) -> Path:
        return artifact.write(self.folder)

    def has(self, name: str) -> bool:
        return (self.folder / name).exists()

    def finish(self, summary: dict[str, float], artifacts: list[Artifact] = ()) -> None:
        """Write the artifacts and the summary, then status "completed" last."""
        for artifact in artifacts:
            artifact.write(self.folder)
        atomic_write_json(self.folder / layout.SUMMARY, summary)
        self._status(layout.COMPLETED)

    def fail(self, error: BaseException) -> None:
        self._status("failed", error=f"{type(error).__name__}: {error}")

    # -- reading ------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        return read_json(self.folder / layout.IDENTITY)

    def identity(self) -> RunIdentity:
        return RunIdentity.from_dict(self.record())

    def summary(self) -> dict[str, float]:
        return read_json(self.folder / layout.SUMMARY)

    def read(self, name: str) -> Any:
        """An artifact's value: DataFrame, dict of arrays, JSON value or torch object."""
        path, kind = self.folder / name, Path(name).suffix
        if kind == ".parquet":
            return pd.read_parquet(path)
        if kind == ".npz":
            with np.load(path) as data:
                return dict(data)
        if kind == ".json":
            return read_json(path)
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class RunRecord:
    """A completed run as postprocess sees it (from identity.json, status.json and summary.json)."""
    folder: Path
    identity: RunIdentity
    summary: dict[str, float]
    inputs: dict[str, str]
    labels: dict[str, str]


def iter_runs(results_root: str | Path, experiment: str | None = None,
              group: str | None = None) -> Iterator[RunRecord]:
    """Completed runs under `results_root` (optionally one experiment / group), sorted by folder.

    Folders without status "completed" (running, failed, crashed) are skipped.
    """
    pattern = f"{experiment or '*'}/{group or '*'}/*/{layout.STATUS}"
    for status in sorted(Path(results_root).glob(pattern)):
        store = RunStore(status.parent)
        if not store.is_completed():
            continue
        record = store.record()
        yield RunRecord(store.folder, RunIdentity.from_dict(record), store.summary(),
                        dict(record.get("inputs") or {}), {k: str(v) for k, v in (record.get("labels") or {}).items()})

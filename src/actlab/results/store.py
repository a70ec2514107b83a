"""The results store: one folder per run, every file written atomically, status.json last.

Folder = `RunIdentity.folder(paths.results)`; file names in `actlab.results.layout`. A run is
complete iff status.json says {"state": "completed"}; a crashed or preempted run leaves status
"running" or "failed" (its summary may be absent or stale, and readers must ignore it).
`iter_runs(results_root)` is the one reader postprocess needs.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch

from actlab.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from actlab.identity import RunIdentity, submit_timestamp
from actlab.results import layout


def _write_parquet(path: Path, table: pd.DataFrame) -> None:
    atomic_write(path, lambda p: table.to_parquet(p, index=False))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


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
    def begin(self, identity: RunIdentity, config_yaml: str, stream: dict[str, Any]) -> None:
        """Start (or restart) a run: identity, config and stream manifest, status "running".

        A folder that already holds another identity or another stream is an error: its files
        are left as they are.
        """
        ident_path = self.folder / layout.IDENTITY
        if ident_path.exists() and read_json(ident_path) != identity.to_dict():
            raise ValueError(f"{ident_path} holds another run's identity; refusing to overwrite it")
        stream_path = self.folder / layout.STREAM
        if stream_path.exists() and read_json(stream_path)["sha256"] != stream["sha256"]:
            raise ValueError(f"{stream_path}: the user's stream changed since this run started "
                             f"(sha256 {read_json(stream_path)['sha256']} -> {stream['sha256']})")
        atomic_write_json(ident_path, identity.to_dict())
        atomic_write_text(self.folder / layout.CONFIG, config_yaml)
        atomic_write_json(stream_path, stream)
        self._status("running")

    def write_transfer(self, stream_user: str, result: dict[str, Any]) -> None:
        atomic_write_json(self.folder / layout.TRANSFER_DIR / f"{stream_user}.json", result)

    def transfer_done(self, stream_user: str) -> bool:
        return (self.folder / layout.TRANSFER_DIR / f"{stream_user}.json").exists()

    def finish(self, summary: dict[str, float], predictions: pd.DataFrame, forgetting: pd.DataFrame,
               final_model: dict[str, torch.Tensor]) -> None:
        """Write the results, then status "completed" last."""
        _write_parquet(self.folder / layout.PREDICTIONS, predictions)
        _write_parquet(self.folder / layout.FORGETTING, forgetting)
        buf = io.BytesIO()
        torch.save(final_model, buf)
        atomic_write_bytes(self.folder / layout.FINAL_MODEL, buf.getvalue())
        atomic_write_json(self.folder / layout.SUMMARY, summary)
        self._status(layout.COMPLETED)

    def fail(self, error: BaseException) -> None:
        self._status("failed", error=f"{type(error).__name__}: {error}")

    # -- reading ------------------------------------------------------------------------------
    def identity(self) -> RunIdentity:
        return RunIdentity.from_dict(read_json(self.folder / layout.IDENTITY))

    def summary(self) -> dict[str, float]:
        return read_json(self.folder / layout.SUMMARY)

    def stream(self) -> dict[str, Any]:
        return read_json(self.folder / layout.STREAM)

    def final_model(self) -> dict[str, torch.Tensor]:
        return torch.load(self.folder / layout.FINAL_MODEL, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class RunRecord:
    """A completed run as postprocess sees it."""
    folder: Path
    identity: RunIdentity
    summary: dict[str, float]
    method: str                      # the method config's `name`
    stream_sha256: str


def iter_runs(results_root: str | Path, experiment: str | None = None,
              group: str | None = None) -> Iterator[RunRecord]:
    """Completed runs under `results_root` (optionally one experiment / group), sorted by folder.

    Folders without status "completed" (running, failed, crashed) are skipped.
    """
    import yaml  # pyyaml ships with Hydra/OmegaConf

    root = Path(results_root)
    pattern = f"{experiment or '*'}/{group or '*'}/*/{layout.STATUS}"
    for status in sorted(root.glob(pattern)):
        store = RunStore(status.parent)
        if not store.is_completed():
            continue
        cfg = yaml.safe_load((store.folder / layout.CONFIG).read_text()) or {}
        yield RunRecord(store.folder, store.identity(), store.summary(),
                        str(cfg.get("method", {}).get("name", "")), store.stream()["sha256"])

"""Read offline W&B run folders (`run-<id>.wandb` record logs) without syncing them.

wandb 0.31 keeps no Python reader for its record log (`wandb.sdk.internal.datastore` is gone), so
the container format is decoded here; the records themselves are wandb's own protobuf
`wandb.proto.wandb_internal_pb2.Record` messages. The container is LevelDB's log format with a
W&B file header: a 7-byte header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of
chunks, each chunk = crc32 (uint32, seeded with the chunk type byte), length (uint16), type
(uint8: 1 full, 2 first, 3 middle, 4 last) and data; a block tail shorter than a chunk header
is zero padding. This is an internal format: wandb is pinned in requirements.txt and
tests/test_post_sources.py writes real offline runs and reads them back.

A requeued job resumes the same run id in a new folder, so one id can own several record logs:
`read_offline_runs` merges them in the order they started, so the latest summary wins.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from actlab.errors import DataError
from actlab.post.sources import Runs, WandbRunData, rows_from_wandb

_IDENT = b":W&B"
_MAGIC = 0xBEE1
_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}


def iter_record_bytes(path: str | Path) -> Iterator[bytes]:
    """The serialized records of one `.wandb` file, in order.

    A truncated final record (a job killed mid-write) ends the iteration; a checksum mismatch
    elsewhere is corruption and raises DataError naming the file and offset.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        raise DataError(f"{path}: too short for a W&B record log")
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if ident != _IDENT or magic != _MAGIC or version != 0:
        raise DataError(f"{path}: not a W&B record log (header {ident!r} {magic:#x} v{version})")
    pos = _FILE_HEADER.size
    pending: list[bytes] = []
    while pos < len(data):
        space = _BLOCK - pos % _BLOCK
        if space < _CHUNK_HEADER.size:
            pos += space                  # zero padding at the end of a block
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        if kind == 0 and length == 0:
            pos += space                  # preallocated / padded tail of a block
            continue
        if start + length > len(data):
            return                        # truncated last record
        chunk = data[start:start + length]
        if kind not in _TYPE_CRC or zlib.crc32(chunk, _TYPE_CRC[kind]) != crc:
            raise DataError(f"{path}: corrupt record chunk at byte {pos}")
        pos = start + length
        if kind == _FULL:
            pending = []
            yield chunk
        elif kind == _FIRST:
            pending = [chunk]
        elif kind == _MIDDLE:
            pending.append(chunk)
        else:
            pending.append(chunk)
            yield b"".join(pending)
            pending = []


@dataclass
class OfflineRun:
    """What postprocess needs from one W&B run id, merged over its record logs."""
    id: str
    group: str = ""
    project: str = ""
    start_time: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None     # None: the log has no exit record (killed, or still running)
    files: list[Path] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The W&B API's run state names, for one interface over both back ends."""
        if self.exit_code is None:
            return "crashed"
        return "finished" if self.exit_code == 0 else "failed"


def _keys(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set_nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def _config_value(item: Any) -> Any:
    value = json.loads(item.value_json)
    # wandb may wrap a top-level config value as {"value": v, "desc": ...}
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value


def read_run_file(path: str | Path, history: bool = False) -> OfflineRun:
    """One `.wandb` file -> OfflineRun (config, group, summary, exit code, optional history)."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    run: OfflineRun | None = None
    for raw in iter_record_bytes(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            if run is not None and run.id != rec.run.run_id:
                raise DataError(f"{path}: holds two run ids ({run.id}, {rec.run.run_id})")
            run = run or OfflineRun(id=rec.run.run_id)
            run.group = rec.run.run_group or run.group
            run.project = rec.run.project or run.project
            run.start_time = rec.run.start_time.seconds + rec.run.start_time.nanos * 1e-9
            for item in rec.run.config.update:
                _set_nested(run.config, _keys(item), _config_value(item))
        elif run is None:
            continue                       # header records come before the run record
        elif kind == "config":
            for item in rec.config.update:
                _set_nested(run.config, _keys(item), _config_value(item))
        elif kind == "summary":
            for item in rec.summary.update:
                _set_nested(run.summary, _keys(item), json.loads(item.value_json))
            for item in rec.summary.remove:
                run.summary.pop(_keys(item)[0], None)
        elif kind == "history" and history:
            run.history.append({"/".join(_keys(i)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    if run is None:
        raise DataError(f"{path}: no run record")
    run.files.append(path)
    return run


def _merge(into: OfflineRun, later: OfflineRun) -> None:
    into.group = later.group or into.group
    into.config.update(later.config)
    into.summary.update(later.summary)
    into.history.extend(later.history)
    into.exit_code = later.exit_code
    into.files.extend(later.files)


def find_run_files(wandb_dir: str | Path) -> list[Path]:
    """Every `run-*.wandb` under `wandb_dir` (any depth: `dir=` adds a `wandb/` level)."""
    return sorted(Path(wandb_dir).rglob("run-*.wandb"))


def read_offline_runs(wandb_dir: str | Path, history: bool = False) -> dict[str, OfflineRun]:
    """Run id -> OfflineRun merged over its record logs in start-time order (a requeued job's later
    summary and exit code win; each id appears once)."""
    parts = [read_run_file(p, history=history) for p in find_run_files(wandb_dir)]
    runs: dict[str, OfflineRun] = {}
    for part in sorted(parts, key=lambda r: (r.start_time, str(r.files[0]))):
        if part.id in runs:
            _merge(runs[part.id], part)
        else:
            runs[part.id] = part
    return runs


def load_offline(wandb_dir: str | Path, results_root: str | Path | None = None) -> Runs:
    return rows_from_wandb((WandbRunData(r.id, r.group, r.config, r.summary, r.state)
                            for r in read_offline_runs(wandb_dir).values()), results_root)

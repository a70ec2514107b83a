"""The shared reference: one reference group per setup, not per experiment (docs/families.md).

An experiment's `reference: {method: frozen}` point computes the same numbers in every experiment
and sweep whose composed config agrees on what the job reads, so its runs are identified by that:
- the reference point's resolved task config, less the keys that never change its numbers (the
  launcher and identity keys, `paths.*`, and the primary config's `reference_identity.ignore`,
  e.g. worker counts and launcher keys of the family);
- the SHA-256 of the bytes of the files named by `reference_identity.files` (continual: the
  pretrained checkpoint), cached by path + size + mtime in the results store
  (`<results>/.sha256_cache.json`), so a 20 GB checkpoint is read once, not at every submission.
group = "ref-" + hash of that; its runs live in the results store under the experiment
`reference`, one folder per (group, unit, seed) and no submit time in the run id
(`submitted: shared`), so every sweep that needs a run finds the same folder: a completed run is
reused (the manifest row says `reused`; nothing is submitted), an unfinished one is submitted again
with the identity it began with, and two sweeps running it at once meet at the run folder's lease.
`<results>/reference/<group>/reference.json` records what identified the group.

A sweep with a preparation step (continual: `pretrain: true`) writes its inputs after submission,
so their bytes cannot identify the reference: its reference stays the experiment's own group.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from actlab.atomic import atomic_write_json, read_json
from actlab.identity import RunIdentity, group_hash
from actlab.job import NOT_A_POINT, file_sha256
from actlab.launch.manifest import Row
from actlab.results import layout
from actlab.results.store import RunStore

REFERENCE_EXPERIMENT = "reference"    # the results store's folder of every shared reference group
SHARED_SUBMITTED = "shared"           # `submitted` of a shared run: one folder, whoever submits it
GROUP_PREFIX = "ref-"
IDENTITY_FILE = "reference.json"      # <results>/reference/<group>/: what identified the group
CACHE_FILE = ".sha256_cache.json"     # <results>/: path -> {size, mtime_ns, sha256}
# configs/run.yaml's launcher keys: which runs to make, not what one computes
LAUNCHER_KEYS = ("seeds", "grid", "reference", "reference_identity")


def cached_sha256(path: str | Path, cache: Path) -> str:
    """SHA-256 of a file's bytes, from `cache` while the file's path, size and mtime are unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    entries = read_json(cache) if cache.exists() else {}
    entry = entries.get(str(path))
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    sha = file_sha256(path)
    # concurrent submissions may each add an entry; losing one only costs a later re-hash
    entries = read_json(cache) if cache.exists() else {}
    entries[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
    atomic_write_json(cache, entries)
    return sha


def _drop(tree: dict[str, Any], key: str) -> bool:
    """Remove a dotted key (`data.num_workers`; `paths.` = the whole node) from a nested dict."""
    *parents, last = key.rstrip(".").split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return False
    del node[last]
    return True


def reference_identity(cfg: DictConfig, unit_key: str | None, results_root: Path) -> dict[str, Any]:
    """{"config": what of the composed reference config determines its numbers, "files": {key: SHA-256}}.

    `cfg` is the reference point's composed task config (no unit or seed set). ValueError names a
    `reference_identity` key that is not in the config, or a file that does not exist.
    """
    spec = cfg.get("reference_identity") or {}
    ignore = [str(k) for k in spec.get("ignore") or []]
    files = [str(k) for k in spec.get("files") or []]
    cfg = cfg.copy()
    # data paths interpolate paths.root: resolve it as the launcher gives it to the tasks
    OmegaConf.update(cfg, "paths.root", str(Path(cfg.paths.root).resolve()), merge=False)
    hashes = {}
    for key in files:
        path = OmegaConf.select(cfg, key, default=None)
        if path is None or not Path(str(path)).is_file():
            raise ValueError(f"reference_identity.files: `{key}` = {path!r} is not a file; the shared "
                             f"reference is identified by its bytes")
        hashes[key] = cached_sha256(str(path), results_root / CACHE_FILE)
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in ignore:
        if not _drop(tree, key):
            raise ValueError(f"reference_identity.ignore: `{key}` is not a key of the config")
    for key in (*NOT_A_POINT, *LAUNCHER_KEYS, *((unit_key,) if unit_key else ())):
        _drop(tree, key)
    return {"config": tree, "files": hashes}


def shared_group(identity: dict[str, Any]) -> str:
    return GROUP_PREFIX + group_hash(identity)


def shared_identity(group: str, overrides: dict[str, Any], unit: str | None, seed: int, code: str,
                    family: str) -> RunIdentity:
    """A run of a shared reference group: experiment `reference`, no submit time in its run id."""
    return replace(RunIdentity.for_point(REFERENCE_EXPERIMENT, overrides, unit, seed, SHARED_SUBMITTED, code, family),
                   group=group)


def attach_shared_runs(rows: list[Row], results_root: Path, identity: dict[str, Any] | None,
                       group: str | None, dry: bool) -> list[Row]:
    """The rows of the shared reference as the store has them: a completed run is `reused` (not
    submitted), an unfinished one keeps the identity it began with (code version included), so its
    job resumes it. Prints how many were reused; records the group's identity beside its runs."""
    if identity is None or group is None:
        return rows
    if not dry:
        atomic_write_json(results_root / REFERENCE_EXPERIMENT / group / IDENTITY_FILE, identity)
    out, reused = [], 0
    for row in rows:
        store = RunStore(row.run_folder)
        if row.identity["experiment"] != REFERENCE_EXPERIMENT or not store.has(layout.IDENTITY):
            out.append(row)
            continue
        began = RunIdentity.from_dict(store.record()).to_dict()
        done = store.is_completed()
        reused += done
        out.append(replace(row, identity=began, reused=done))
    if reused:
        print(f"reusing {reused} completed reference runs of {group} ({results_root / REFERENCE_EXPERIMENT / group})")
    return out

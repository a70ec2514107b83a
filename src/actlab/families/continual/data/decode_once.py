"""The sweep's preparation step: decode every user stream of an experiment once into the decode
cache (data/clip_store.py), before the stream arrays start (entry point: jobs/decode_cache.py).

The users are the experiment's units (`users`, as the launcher expands them); the stream settings
are the experiment's composed `data` config, so every grid point that keeps them reads these
entries (a point that changes the transform or the decoder gets another key and decodes itself).
Entries already present, from an earlier sweep or a concurrent one, are kept. Every entry's size
is printed before it is written, and the total first. DataLoader workers (`workers`, default: the
CPUs this process may use, less one) decode clips of one stream in parallel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from actlab.errors import DataError
from actlab.families.continual.data.clip_store import Entry, entry_bytes, human, write_entry
from actlab.families.continual.data.split import experiment_users
from actlab.families.continual.data.user_streams import open_user_stream


@dataclass(frozen=True)
class Prepared:
    user: str
    entry: Entry
    written: bool
    n_clips: int


def default_workers() -> int:
    return max(0, len(os.sched_getaffinity(0)) - 1)


def prepare(cfg: DictConfig, workers: int | None = None) -> list[Prepared]:
    data = cfg.data
    if not data.get("cache_dir"):
        raise DataError("decode cache: data.cache_dir is null; set it (default ${paths.cache})")
    if str(data.get("pixels", "float")) != "uint8":
        raise DataError(f"decode cache: data.pixels={data.get('pixels', 'float')} keeps float pixels; "
                        f"the cache stores uint8 clips (set data.pixels=uint8)")
    spec = cfg.users
    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    users = experiment_users(spec, cfg.paths.splits)
    streams = [open_user_stream(data, u, use_cache=False) for u in users]
    total = sum(entry_bytes(s.dataset) for s in streams)
    print(f"decode cache: {len(streams)} user stream(s), {sum(len(s.clips) for s in streams)} clips, "
          f"at most {human(total)} under {Path(str(data.cache_dir))}", flush=True)
    workers = default_workers() if workers is None else workers
    out = []
    for s in streams:
        entry, written = write_entry(s.dataset, s.sha256, data.cache_dir, label=f"user {s.user}", workers=workers)
        out.append(Prepared(s.user, entry, written, len(s.clips)))
    return out

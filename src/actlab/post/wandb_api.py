"""W&B public API as a `Runs` source, with a JSON cache of pulled runs.

`api.runs(path, filters={"group": g})` returns lazy run objects (.id .group .config .summary
.state); each attribute access can cost a query, so every run is turned into a plain
`WandbRunData` once and the lot is cached in a JSON file: a second table build reads the cache
and makes no request. Everything after `pull` is the code the offline back end runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from actlab.atomic import atomic_write_json
from actlab.errors import DataError
from actlab.post.sources import Runs, WandbRunData, rows_from_wandb


def _plain(value: Any) -> Any:
    """API summaries are dict-like wrappers (`_json_dict`); configs may hold wrappers too."""
    if hasattr(value, "_json_dict"):
        value = value._json_dict
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_api_run(run: Any) -> WandbRunData:
    return WandbRunData(str(run.id), str(run.group or ""), _plain(run.config), _plain(run.summary),
                        str(getattr(run, "state", "finished")))


def pull(api: Any, path: str, groups: Iterable[str]) -> list[WandbRunData]:
    out: list[WandbRunData] = []
    for g in groups:
        out.extend(from_api_run(r) for r in api.runs(path, filters={"group": g}))
    return out


def load_api(path: str, groups: list[str], cache: str | Path | None = None, api: Any = None,
             refresh: bool = False, results_root: str | Path | None = None) -> Runs:
    """Runs of `groups` in project `path` ("entity/project"). With `cache`, runs are read from it
    when it holds every group asked for (unless `refresh`), else pulled and written to it."""
    cached: dict[str, Any] | None = None
    if cache is not None and Path(cache).exists() and not refresh:
        try:
            cached = json.loads(Path(cache).read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{cache}: not valid JSON ({e})") from e
        if cached.get("path") != path or not set(groups) <= set(cached.get("groups", [])):
            cached = None
    if cached is None:
        if api is None:
            import wandb
            api = wandb.Api()
        runs = pull(api, path, groups)
        if cache is not None:
            atomic_write_json(cache, {"path": path, "groups": sorted(groups),
                                      "runs": [r.to_dict() for r in runs]})
    else:
        runs = [WandbRunData.from_dict(d) for d in cached["runs"] if d.get("group") in set(groups)]
    return rows_from_wandb(runs, results_root)

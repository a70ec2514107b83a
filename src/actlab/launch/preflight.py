"""What `make grid` checks on the submit host before it writes a sweep folder or submits anything.

1. Every environment variable the composed configs read without a default is set
   (`${oc.env:ACTLAB_SCRATCH}` in configs/paths/bluecrystal.yaml): a missing one is named with the
   key that reads it, instead of OmegaConf's resolution error.
2. The family's inputs (`Family.check_inputs`: data files, split files, checkpoint) exist and fit,
   for the experiment's config and for the config of every distinct grid point.

Each problem names the config key, its value, and how to set it: the variable the key reads, or
the `TASK="key=..."` override that replaces it (docs/families.md).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from actlab.family import Family
from actlab.launch.grid import Grid, build_grid, compose_task

TASK = 'TASK="{key}=..."'      # how `make grid` replaces a key of the task config
ARGS = 'ARGS="{key}=..."'      # ... and a key of configs/launch.yaml (cluster.*, resources.*)
_UNSET = re.compile(r"Environment variable '([^']+)' not found")
_LEADING_REF = re.compile(r"^\$\{(\.*[\w.]+)\}(.*)$", re.S)   # `${paths.data}` or `${.root}/x`
_ENV_VALUE = re.compile(r"^\$\{oc\.env:(\w+)")


class InputsError(ValueError):
    """The inputs of a sweep are missing or do not fit; nothing was written or submitted."""

    def __init__(self, experiment: str, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"experiment {experiment}: stopped before writing or submitting anything:\n  "
                         + "\n  ".join(self.problems))


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, node


def _raw(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def unset_variables(cfg: DictConfig, override: str = TASK, sections: tuple[str, ...] | None = None) -> list[str]:
    """One problem per key (of `sections`; None = all) whose own value reads an unset variable
    that has no default; keys that only refer to such a key (`splits: ${paths.scratch}/splits`)
    are left out: one cause, one line."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    if sections is not None:
        raw = {k: v for k, v in raw.items() if k in sections}
    problems = []
    for key, value in _leaves(raw):
        if not isinstance(value, str) or "oc.env:" not in value:
            continue
        try:
            OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except OmegaConfBaseException as e:
            unset = _UNSET.search(str(e))
            if unset and f"oc.env:{unset[1]}" in value:
                problems.append(f"{key}: environment variable {unset[1]} is not set "
                                f"(set it, or {override.format(key=key)})")
    return problems


def _origin(raw: dict[str, Any], key: str) -> str:
    """The key a user sets to change `key`: follow the interpolation a value starts with
    (`data.metadata: ${.root}/../ego4d.json` -> data.root -> paths.data) until a value of its own;
    within `paths.*` (what a user sets, configs/paths/) only pure aliases (`data: ${paths.ego4d}`)."""
    seen = set()
    while key not in seen:
        seen.add(key)
        value = _raw(raw, key)
        ref = _LEADING_REF.match(value) if isinstance(value, str) else None
        if ref is None or (key.startswith("paths.") and ref[2]):
            return key
        target = ref[1]
        if target.startswith("."):   # relative: one dot = the key's own node, each further dot one up
            dots = len(target) - len(target.lstrip("."))
            parent = key.split(".")[:-1]
            target = ".".join([*parent[:len(parent) - (dots - 1)], target[dots:]])
        key = target
    return key


def how_to_set(cfg: DictConfig, key: str) -> str:
    """`(set ACTLAB_EGO4D or TASK="paths.ego4d=...")`: the key a user sets for `key`, and the
    variable it reads when it reads one."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    origin = _origin(raw, key)
    value = _raw(raw, origin)
    env = _ENV_VALUE.match(value) if isinstance(value, str) else None
    task = TASK.format(key=origin)
    return f"(set {env[1]} or {task})" if env else f"(set {task})"


def missing(cfg: DictConfig, key: str, path: str | Path, kind: str = "file") -> str | None:
    """`key = path: no such file (set ...)`, or None when the path is a `kind` ("file" | "folder")."""
    path = Path(path)
    if path.is_file() if kind == "file" else path.is_dir():
        return None
    return f"{key} = {path}: no such {kind} {how_to_set(cfg, key)}"


def checked_grid(config_dir: Path, experiment: str, family: Family, repo: Path,
                 task_overrides: dict[str, Any]) -> Grid:
    """`build_grid`, with the checks above: on the experiment's config before the grid reads its
    inputs (the units' split file), then on every distinct grid point's config. Raises InputsError."""
    try:
        base = compose_task(config_dir, family.config_name, experiment, task_overrides, {})
    except ValueError:
        # build_grid composes the same config and says which experiment file or override is wrong
        build_grid(config_dir, experiment, family, repo, task_overrides)
        raise
    _stop(experiment, unset_variables(base) or family.check_inputs(base))
    grid = build_grid(config_dir, experiment, family, repo, task_overrides)
    _stop(experiment, [p for cfg in grid.configs for p in family.check_inputs(cfg)])
    return grid


def _stop(experiment: str, problems: list[str]) -> None:
    if problems:
        raise InputsError(experiment, list(dict.fromkeys(problems)))

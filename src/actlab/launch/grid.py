"""An experiment's grid x users x seeds -> GridPoints, each validated by composing its config.

A grid key that names a config group (`method: [frozen, replay]`) becomes a Hydra override
`method=replay` (its value must be an option of the group); any other key (`method.lr`) is set
on the composed config with OmegaConf, so a value is data and never passes through Hydra's
override grammar or a shell: spaces, quotes, `$()`, backticks and `;` reach the task unchanged.
The same `compose_task` builds the config at validation time and inside the task.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from actlab.identity import RunIdentity

_OPTION = re.compile(r"^[A-Za-z0-9_./-]+$")
REFERENCE_METHODS = {"frozen": "frozen"}   # `reference: frozen` -> the grid point {method: frozen}


@dataclass(frozen=True)
class GridPoint:
    overrides: dict[str, Any]     # the point's own values; they define the group hash
    user: str
    seed: int

    @property
    def label(self) -> str:
        vals = ",".join(f"{k}={v}" for k, v in self.overrides.items()) or "<defaults>"
        return f"[{vals}] user={self.user} seed={self.seed}"

    def identity(self, experiment: str, submitted: str, code: str) -> RunIdentity:
        return RunIdentity.for_point(experiment, self.overrides, self.user, self.seed, submitted, code)


@dataclass
class Grid:
    experiment: str
    points: list[GridPoint]
    transfer: str
    cfg: DictConfig = field(repr=False)   # the experiment's composed stream config (no point applied)


def _escape(value: Any) -> Any:
    """Make strings literal for OmegaConf: `${...}` in a grid value is text, not an interpolation."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def _experiment_override(config_dir: Path, config_name: str, experiment: str) -> str:
    """`experiment=x` when the primary config lists the experiment group in its defaults, else `+experiment=x`."""
    primary = OmegaConf.load(config_dir / f"{config_name}.yaml")
    defaults = primary.get("defaults") or []
    listed = any(isinstance(d, (dict, DictConfig)) and "experiment" in d for d in defaults)
    return f"{'' if listed else '+'}experiment={experiment}"


def compose_task(config_dir: Path, config_name: str, experiment: str, overrides: dict[str, Any],
                 literals: dict[str, Any]) -> DictConfig:
    """configs/<config_name>.yaml + experiment + the point's overrides + literal values (user, seed, ...).

    Raises ValueError naming the key or value that does not fit the config.
    """
    config_dir = Path(config_dir).resolve()
    hydra_overrides = [_experiment_override(config_dir, config_name, experiment)]
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if (config_dir / key.replace(".", "/")).is_dir():
            if not isinstance(value, str) or not _OPTION.match(value):
                raise ValueError(f"config group `{key}`: option {value!r} is not a config name")
            if not (config_dir / key / f"{value}.yaml").exists():
                raise ValueError(f"config group `{key}`: no option {value!r} in {config_dir / key}")
            hydra_overrides.append(f"{key}={value}")
        else:
            values[key] = value
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=hydra_overrides)
        except Exception as e:  # Hydra raises several types; the message names the cause
            raise ValueError(f"composing {config_name} with {hydra_overrides}: {e}") from e
    if cfg.get("grid"):
        # the grid's own values are data too: escaped, so resolving the task config never fails on them
        cfg.grid = _escape(OmegaConf.to_container(cfg.grid, resolve=False))
    for key, value in values.items():
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ValueError(f"unknown config key `{key}` (value {value!r}) for experiment {experiment}")
        OmegaConf.update(cfg, key, _escape(value), merge=False)
    OmegaConf.set_struct(cfg, False)
    for key, value in literals.items():
        OmegaConf.update(cfg, key, _escape(value), merge=False)
    return cfg


def expand_grid(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Cartesian product, in the order of the keys as written: [{key: value, ...}, ...]."""
    if not grid:
        return [{}]
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise ValueError(f"grid key `{k}`: expected a non-empty list of values, got {grid[k]!r}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def resolve_users(spec: Any, splits_dir: str | Path) -> list[str]:
    """`train` / `test` (the user ids of that split file) or an explicit list of ids."""
    if isinstance(spec, str):
        path = Path(splits_dir) / f"{spec}.json"
        if not path.exists():
            raise ValueError(f"users: {spec!r} needs the split file {path} (run `make split` first)")
        users = json.loads(path.read_text()).get("users")
        if not isinstance(users, dict) or not users:
            raise ValueError(f"{path}: no `users` in the split file")
        return [str(u) for u in users]
    if isinstance(spec, (list, tuple)) and spec:
        return [str(u) for u in spec]
    raise ValueError(f"users: expected train, test or a list of ids, got {spec!r}")


def build_grid(config_dir: str | Path, experiment: str, config_name: str = "stream") -> Grid:
    """All (grid point x user x seed) of an experiment, each one composed once to validate it.

    The reference group (`reference: frozen`) is always part of the grid, once.
    """
    config_dir = Path(config_dir).resolve()
    if not (config_dir / "experiment" / f"{experiment}.yaml").exists():
        raise ValueError(f"experiment {experiment!r}: no {config_dir / 'experiment' / (experiment + '.yaml')}")
    base = compose_task(config_dir, config_name, experiment, {}, {})
    grid_spec = OmegaConf.to_container(base.grid, resolve=True) if base.get("grid") else None
    overrides_list = expand_grid(grid_spec)
    reference = base.get("reference")
    if reference:
        if reference not in REFERENCE_METHODS:
            raise ValueError(f"reference: {reference!r} is not one of {sorted(REFERENCE_METHODS)}")
        ref_point = {"method": REFERENCE_METHODS[reference]}
        if ref_point not in overrides_list:
            overrides_list = [ref_point] + overrides_list
    users = resolve_users(OmegaConf.to_container(base.users) if isinstance(base.users, DictConfig)
                          or OmegaConf.is_list(base.users) else base.users,
                          base.paths.splits)
    seeds = [int(s) for s in (base.get("seeds") or [0])]
    points = [GridPoint(o, u, s) for o in overrides_list for u in users for s in seeds]
    for p in points:
        try:
            cfg = compose_task(config_dir, config_name, experiment, p.overrides,
                               {"user": p.user, "seed": p.seed})
            OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:
            raise ValueError(f"experiment {experiment}: grid point {p.label} is invalid: {e}") from e
    return Grid(experiment=experiment, points=points, transfer=str(base.get("transfer") or "none"), cfg=base)

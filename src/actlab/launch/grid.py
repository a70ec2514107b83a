"""An experiment's grid x units x seeds -> GridPoints, each validated by composing its config.

Units are the family's replication unit (continual: users from the split file; a family without
one has seeds only); the reference group (`reference: {method: frozen}`) is added as a point
when the grid lacks it. Its group is shared by every experiment with the same setup
(launch/reference.py): identified by what determines its numbers, not by the experiment.
Identity keys (group, seed, submitted, the unit, ...) are never grid keys.

A grid key that names a config group (`method: [frozen, replay]`) becomes a Hydra override
`method=replay` (its value must be an option of the group); any other key (`method.lr`) is set
on the composed config with OmegaConf, so a value is data and never passes through Hydra's
override grammar or a shell: spaces, quotes, `$()`, backticks and `;` reach the task unchanged.
A key written `+key` adds a key the config does not have (Hydra's `+`).
Per-sweep task overrides (`task_overrides: [data.max_clips=8, paths.data=...]` in launch.yaml) are
parsed once with Hydra's override grammar and applied to every point like grid values, but are not
part of the grid point (its group hash): they say where and how much, not which method.
The same `compose_task` builds the config at validation time and inside the task.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from actlab.family import Family
from actlab.identity import RunIdentity, group_hash
from actlab.job import NOT_A_POINT
from actlab.launch.reference import reference_identity, shared_group, shared_identity

_OPTION = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class GridPoint:
    overrides: dict[str, Any]     # the point's own values; they define the group hash
    unit: str | None
    seed: int
    shared_group: str | None = None   # the shared reference group this point's runs belong to

    @property
    def label(self) -> str:
        vals = ",".join(f"{k}={v}" for k, v in self.overrides.items()) or "<defaults>"
        unit = "" if self.unit is None else f" unit={self.unit}"
        return f"[{vals}]{unit} seed={self.seed}"

    def identity(self, experiment: str, submitted: str, code: str, family: str) -> RunIdentity:
        if self.shared_group is not None:
            return shared_identity(self.shared_group, self.overrides, self.unit, self.seed, code, family)
        return RunIdentity.for_point(experiment, self.overrides, self.unit, self.seed, submitted, code, family)


@dataclass
class Grid:
    experiment: str
    family: Family
    points: list[GridPoint]
    reference_group: str | None           # group id of the reference point, when the experiment has one
    cfg: DictConfig = field(repr=False)   # the experiment's composed task config (no point applied)
    reference_identity: dict[str, Any] | None = None   # what identifies a shared reference group
    configs: list[DictConfig] = field(default_factory=list, repr=False)  # one per distinct set of point overrides


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
    values: dict[str, tuple[Any, bool]] = {}
    for raw_key, value in overrides.items():
        add = raw_key.startswith("+")
        key = raw_key.lstrip("+")
        # a group of the family's config root, or a shared one (paths/, cluster/, ...) one level up
        group_dir = next((d / key for d in (config_dir, config_dir.parent) if (d / key).is_dir()), None)
        if group_dir is not None:
            if not isinstance(value, str) or not _OPTION.match(value):
                raise ValueError(f"config group `{key}`: option {value!r} is not a config name")
            if not (group_dir / f"{value}.yaml").exists():
                raise ValueError(f"config group `{key}`: no option {value!r} in {group_dir}")
            hydra_overrides.append(f"{'+' if add else ''}{key}={value}")
        else:
            values[key] = (value, add)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=hydra_overrides)
        except Exception as e:  # Hydra raises several types; the message names the cause
            raise ValueError(f"composing {config_name} with {hydra_overrides}: {e}") from e
    if cfg.get("grid"):
        # the grid's own values are data too: escaped, so resolving the task config never fails on them
        cfg.grid = _escape(OmegaConf.to_container(cfg.grid, resolve=False))
    for key, (value, add) in values.items():
        # `in` does not resolve the value: a key reading an unset variable is still there to replace
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not add and not (isinstance(node, DictConfig) and leaf in node):
            raise ValueError(f"unknown config key `{key}` (value {value!r}) for experiment {experiment}"
                             f" (write `+{key}` to add a key)")
        OmegaConf.update(cfg, key, _escape(value), merge=False, force_add=add)
    OmegaConf.set_struct(cfg, False)
    for key, value in literals.items():
        OmegaConf.update(cfg, key, _escape(value), merge=False)
    return cfg


def parse_task_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["data.max_clips=8", "+method.sleep_s=2"]` -> {"data.max_clips": 8, "+method.sleep_s": 2}.

    Hydra's grammar gives the value its type (8 is an int, `/a/b` a string, `[1,2]` a list);
    `~key` (delete) is refused: a task config must keep every key the job reads.
    """
    parser = OverridesParser.create()
    out: dict[str, Any] = {}
    for item in items or []:
        if not isinstance(item, str):
            raise ValueError(f"task_overrides: {item!r} is not a `key=value` string")
        try:
            (ov,) = parser.parse_overrides([item])
        except Exception as e:  # Hydra's parse errors name the position
            raise ValueError(f"task_overrides: cannot parse {item!r}: {e}") from e
        if ov.is_delete() or ov.is_force_add() or ov.package:
            raise ValueError(f"task_overrides: {item!r}: only `key=value` and `+key=value` are supported")
        if ov.is_sweep_override():
            raise ValueError(f"task_overrides: {item!r} is a sweep; put swept values in the experiment's grid")
        key = ("+" if ov.is_add() else "") + ov.key_or_group
        if key.lstrip("+") in {k.lstrip("+") for k in out}:
            raise ValueError(f"task_overrides: key `{ov.key_or_group}` is given twice")
        out[key] = ov.value()
    return out


def expand_grid(grid: dict[str, list[Any]] | list[dict[str, list[Any]]] | None) -> list[dict[str, Any]]:
    """Cartesian product, in the order of the keys as written: [{key: value, ...}, ...].

    A list of such mappings is the union of their products, in order, each point once: one
    experiment can hold rows of different methods (a paper table: SGD at one lr, replay at
    another, the label window), which no single product expresses.
    """
    if not grid:
        return [{}]
    if isinstance(grid, list):
        points: list[dict[str, Any]] = []
        for k, sub in enumerate(grid):
            if not isinstance(sub, dict) or not sub:
                raise ValueError(f"grid[{k}]: expected a non-empty mapping of key: [values], got {sub!r}")
            points += [p for p in expand_grid(sub) if p not in points]
        return points
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise ValueError(f"grid key `{k}`: expected a non-empty list of values, got {grid[k]!r}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def grid_keys(grid: dict[str, list[Any]] | list[dict[str, list[Any]]] | None) -> list[str]:
    """Every key a grid (or a list of sub-grids) sweeps."""
    subs = grid if isinstance(grid, list) else [grid or {}]
    return list(dict.fromkeys(k for sub in subs if isinstance(sub, dict) for k in sub))


def refuse_identity_keys(keys: list[str], family: Family, where: str) -> None:
    """Identity keys say which run, not what it computes: a grid or task override must not set them."""
    identity = set(NOT_A_POINT) | ({family.unit} if family.unit else set())
    for raw in keys:
        key = raw.lstrip("+")
        if key in identity and not key.endswith("."):
            raise ValueError(f"{where}: `{key}` is an identity key (set by the launcher), not a grid key"
                             + (f"; the experiment lists the {family.name} family's units" if key == family.unit else "")
                             + ("; list seeds in `seeds:`" if key == "seed" else ""))


def build_grid(config_dir: str | Path, experiment: str, family: Family, repo: Path,
               task_overrides: dict[str, Any] | None = None) -> Grid:
    """All (grid point x unit x seed) of an experiment, each one composed once to validate it.

    The reference group (`reference: {key: value}`) is part of the grid, once, when the grid has
    no point that is that reference already. `task_overrides` (see `parse_task_overrides`) apply
    to every point, the reference included. The reference's group is the shared one of its setup
    (`reference.reference_identity`), or the experiment's own when a preparation step of the
    family (continual: `pretrain: true`) writes the inputs after submission.
    """
    config_dir = Path(config_dir).resolve()
    task_overrides = dict(task_overrides or {})
    config_name = family.config_name
    if not (config_dir / "experiment" / f"{experiment}.yaml").exists():
        raise ValueError(f"experiment {experiment!r}: no {config_dir / 'experiment' / (experiment + '.yaml')}")
    refuse_identity_keys(list(task_overrides), family, f"experiment {experiment}: task_overrides")
    try:
        base = compose_task(config_dir, config_name, experiment, task_overrides, {})
        OmegaConf.to_container(base.paths, resolve=True)
    except Exception as e:
        raise ValueError(f"experiment {experiment}: task_overrides {task_overrides} are invalid: {e}") from e
    grid_spec = OmegaConf.to_container(base.grid, resolve=True) if base.get("grid") else None
    refuse_identity_keys(grid_keys(grid_spec), family, f"experiment {experiment}: grid")
    clash = {k.lstrip("+") for k in task_overrides} & set(grid_keys(grid_spec))
    if clash:
        raise ValueError(f"experiment {experiment}: task_overrides set {sorted(clash)}, which the grid sweeps")
    overrides_list = expand_grid(grid_spec)
    reference = base.get("reference")
    reference_group = None
    if reference:
        if not isinstance(reference, DictConfig):
            raise ValueError(f"experiment {experiment}: reference must be a mapping of overrides, "
                             f"e.g. {{method: frozen}}, got {reference!r}")
        ref_point = OmegaConf.to_container(reference, resolve=True)
        refuse_identity_keys(list(ref_point), family, f"experiment {experiment}: reference")
        if ref_point not in overrides_list:
            overrides_list = [ref_point] + overrides_list
        reference_group = f"{experiment}-{group_hash(ref_point)}"
    units: list[str | None] = [None]
    if family.unit:
        units = [str(u) for u in family.units(base, repo)]
        if not units:
            raise ValueError(f"experiment {experiment}: no {family.unit}s")
    seeds = [int(s) for s in (base.get("seeds") or [0])]
    ref_identity = None
    if reference_group is not None and not any(s.before and s.enabled(base) for s in family.steps):
        try:
            ref_cfg = compose_task(config_dir, config_name, experiment, task_overrides | ref_point, {})
            ref_identity = reference_identity(ref_cfg, family.unit, Path(ref_cfg.paths.results).resolve())
        except Exception as e:
            raise ValueError(f"experiment {experiment}: reference {ref_point}: {e}") from e
        reference_group = shared_group(ref_identity)
    points = [GridPoint(o, u, s, reference_group if ref_identity is not None and o == ref_point else None)
              for o in overrides_list for u in units for s in seeds]
    # Compose once per set of grid overrides (a Hydra compose costs ~0.1 s) and check each
    # unit x seed by resolving a copy with its literal values: 2,000 tasks validate in seconds.
    composed: dict[str, DictConfig] = {}
    for p in points:
        key = repr(sorted(p.overrides.items()))
        try:
            if key not in composed:
                composed[key] = compose_task(config_dir, config_name, experiment,
                                             task_overrides | p.overrides, {})
            cfg = composed[key].copy()
            if family.unit:
                OmegaConf.update(cfg, family.unit, _escape(p.unit), merge=False)
            OmegaConf.update(cfg, "seed", p.seed, merge=False)
            OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:
            raise ValueError(f"experiment {experiment}: grid point {p.label} is invalid: {e}") from e
    return Grid(experiment=experiment, family=family, points=points, reference_group=reference_group, cfg=base,
                reference_identity=ref_identity, configs=list(composed.values()))

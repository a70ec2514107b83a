"""The experiment families, each a subpackage whose `__init__.py` defines `FAMILY` (actlab.family).

`get(name)` and `names()` list them by folder; `for_experiment(name, configs)` finds the family
that owns `configs/<config_dir>/experiment/<name>.yaml`. Nothing outside `families/` names one.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml

from actlab.family import Family


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def get(name: str) -> Family:
    if name not in names():
        raise ValueError(f"family {name!r}: no src/actlab/families/{name}/ (families: {', '.join(names())})")
    family = getattr(importlib.import_module(f"{__name__}.{name}"), "FAMILY", None)
    if not isinstance(family, Family):
        raise ValueError(f"src/actlab/families/{name}/__init__.py defines no FAMILY = Family(...)")
    return family


def experiment_file(family: Family, experiment: str, configs: Path) -> Path:
    return Path(configs) / family.config_dir / "experiment" / f"{experiment}.yaml"


def for_experiment(experiment: str, configs: Path) -> Family:
    """The family of an experiment file: its `family:` key, else the family its folder is named for."""
    found: dict[Path, Family] = {}
    for name in names():
        family = get(name)
        path = experiment_file(family, experiment, configs)
        if path.exists():
            found.setdefault(path, family)
    if not found:
        known = sorted(p.stem for p in Path(configs).glob("*/experiment/*.yaml"))
        raise ValueError(f"experiment {experiment!r}: no configs/<family>/experiment/{experiment}.yaml "
                         f"(experiments: {', '.join(known)})")
    if len(found) > 1:
        raise ValueError(f"experiment {experiment!r} exists in several families: {sorted(map(str, found))}")
    path, family = next(iter(found.items()))
    try:
        declared = (yaml.safe_load(path.read_text()) or {}).get("family")
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    if declared is None:
        if family.name != family.config_dir:
            # two families share this config root: the folder's own family owns undeclared files
            return get(family.config_dir)
        return family
    family = get(str(declared))
    if Path(configs) / family.config_dir != path.parent.parent:
        raise ValueError(f"{path}: family {declared} keeps its experiments in configs/{family.config_dir}/experiment/")
    return family

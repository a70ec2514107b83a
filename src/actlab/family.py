"""The family contract: what an experiment family declares so that the shared launcher, status,
resubmit, results store and report can run it without naming it (docs/families.md).

A family is a folder `src/actlab/families/<name>/` whose `__init__.py` defines `FAMILY`, a config
root `configs/<config_dir>/` (its primary config and its `experiment/` group), and one job entry
point `jobs/<name>.py`. The registry (`actlab.families.get`) finds every family by its folder.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig

if TYPE_CHECKING:   # the post-processing types, imported only by the families that build them
    from actlab.post.latex import TableSpec
    from actlab.post.tables import Aggregated


@dataclass(frozen=True)
class PipelineStep:
    """A job the family adds to every sweep of its experiments, besides the arrays and the report.

    `before`: the arrays wait for it (`afterok`), e.g. a preparation step; otherwise it waits for
    every array (`afterok`), e.g. the continual family's transfer evaluation.
    """
    name: str
    script: str                                      # jobs/<script>.py of the sweep's code snapshot
    args: Callable[[str, DictConfig], list[str]]     # (experiment, composed config) -> its arguments
    enabled: Callable[[DictConfig], bool] = lambda cfg: True
    before: bool = False
    gpus: bool = True                                # asks resources.gpus like the arrays; False = CPU only
    # the sweep's task overrides the step also gets, by key prefix (`paths.` concerns every job; a step
    # that must see the data exactly as the tasks do, e.g. the decode cache, also takes `data.`)
    overrides: tuple[str, ...] = ("paths.",)


def lazy(target: str) -> Callable[..., Any]:
    """`"package.module:function"` as a callable that imports its module on the first call: a family's
    hooks are declared in its `__init__` without importing torch or pandas when the registry lists it."""
    module, _, name = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = target
    return call


@dataclass(frozen=True)
class Family:
    name: str
    config_dir: str                  # configs/<config_dir>/: the primary config and experiment/ live here
    config_name: str                 # the job's primary config
    job: str                         # "package.module:function" called with the composed task config
    unit: str | None                 # config key of the replication unit (continual: "user"); None = seeds only
    units: Callable[[DictConfig, Path], list[str]] | None  # (experiment config, repo) -> its units
    aggregate: Callable[..., "Aggregated"]  # (runs, reference_group=None, expected_units=None) -> tables
    table: Callable[[], "TableSpec"]         # the default LaTeX table of the family's report
    plots: Callable[["Aggregated", Path], list[Path]] = lambda agg, out: []
    # (aggregate, report folder, the table spec of the report: precision, reported rows) -> the family's
    # other LaTeX tables (paper layouts), written beside table.tex
    tables: Callable[["Aggregated", Path, "TableSpec"], list[Path]] = lambda agg, out, spec: []
    steps: tuple[PipelineStep, ...] = ()
    # (composed task config) -> problems with the inputs its job reads, each naming the config key and
    # the path; the launcher stops on any before it writes a sweep folder (docs/families.md)
    check_inputs: Callable[[DictConfig], list[str]] = lambda cfg: []
    # its job runs as several ranks (resources.tasks_per_node / nodes, launch/ranks.py): rank 0 alone
    # writes the run folder, the others train on their shards (docs/gpu.md)
    distributed: bool = False

    def job_function(self) -> Callable[[DictConfig], Any]:
        module, _, name = self.job.partition(":")
        return getattr(importlib.import_module(module), name)


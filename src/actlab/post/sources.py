"""One typed view of finished runs, whatever back end they come from.

`RunRow` is what aggregation reads: the run's identity, input hashes, labels and summary, plus the
run folder when the results store holds it (a family's artifacts live only there; W&B mirrors
only the summary). `Runs` adds the runs that did not complete, so a table can name the units it
is missing instead of averaging over fewer of them.

Back ends: `store_source.load_store` (results/<experiment>/<group>/<run_id>/), `wandb_offline`
(`.wandb` record logs) and `wandb_api` (public API + JSON cache); the two W&B back ends turn
their runs into `WandbRunData` and share `rows_from_wandb`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from actlab.errors import DataError


@dataclass(frozen=True)
class RunRow:
    run_id: str
    experiment: str
    group: str
    unit: str | None                 # None for families without a replication unit
    seed: int
    submitted: str
    family: str
    inputs: dict[str, str]           # input name -> SHA-256 of what the run read
    labels: dict[str, str]           # what the family's aggregation groups by (e.g. method)
    summary: dict[str, float]
    overrides: dict[str, Any] = field(default_factory=dict)   # the grid point's own values
    folder: Path | None = None       # results-store folder, when known

    @property
    def unit_key(self) -> str:
        """Seeds of one unit are averaged first; without units every seed is its own value."""
        return self.unit if self.unit is not None else f"seed {self.seed}"


@dataclass(frozen=True)
class IncompleteRun:
    """A run that started but did not complete (failed, crashed, preempted and not resumed)."""
    run_id: str
    experiment: str
    group: str
    unit: str | None
    seed: int
    state: str

    @property
    def unit_key(self) -> str:
        """The same key as `RunRow.unit_key`, so a failed run names the unit it leaves out."""
        return self.unit if self.unit is not None else f"seed {self.seed}"


@dataclass
class Runs:
    rows: list[RunRow] = field(default_factory=list)
    incomplete: list[IncompleteRun] = field(default_factory=list)

    def select(self, experiment: str | None = None, group: str | None = None) -> "Runs":
        def keep(r: RunRow | IncompleteRun) -> bool:
            return (experiment is None or r.experiment == experiment) and (group is None or r.group == group)
        return Runs([r for r in self.rows if keep(r)], [r for r in self.incomplete if keep(r)])

    def groups(self) -> list[str]:
        return sorted({r.group for r in self.rows} | {r.group for r in self.incomplete})


def numeric_summary(summary: dict[str, Any]) -> dict[str, float]:
    """Metric entries only: W&B adds `_runtime`, `_step`, `_wandb` and the per-batch `batch` key."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        if k.startswith("_") or "/" not in k or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


@dataclass(frozen=True)
class WandbRunData:
    """The parts of a W&B run (offline log or API object) that postprocess reads."""
    id: str
    group: str
    config: dict[str, Any]
    summary: dict[str, Any]
    state: str                       # "finished" | "failed" | "crashed" | "running" | ...

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "config": self.config, "summary": self.summary,
                "state": self.state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WandbRunData":
        return cls(str(d["id"]), str(d.get("group") or ""), dict(d.get("config") or {}),
                   dict(d.get("summary") or {}), str(d.get("state") or ""))


def rows_from_wandb(runs: Iterable[WandbRunData], results_root: str | Path | None = None) -> Runs:
    """W&B runs -> Runs. Identity, input hashes and labels come from the mirror's config
    ({"identity", "inputs", "labels", "cfg"}, see WandbMirror); a run is complete iff its state is
    "finished". With `results_root`, rows point at the matching store folder when it exists."""
    from actlab.identity import RunIdentity

    out = Runs()
    for run in sorted(runs, key=lambda r: r.id):
        try:
            ident = RunIdentity.from_dict(run.config["identity"])
            inputs = {str(k): str(v) for k, v in dict(run.config["inputs"]).items()}
            labels = {str(k): str(v) for k, v in dict(run.config["labels"]).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"W&B run {run.id}: config lacks the actlab mirror keys "
                            f"(identity, inputs, labels): {e}") from e
        if ident.run_id != run.id:
            raise DataError(f"W&B run {run.id}: identity names run {ident.run_id}")
        if run.state != "finished":
            out.incomplete.append(IncompleteRun(run.id, ident.experiment, ident.group, ident.unit,
                                                ident.seed, run.state))
            continue
        folder = ident.folder(results_root) if results_root is not None else None
        out.rows.append(RunRow(run.id, ident.experiment, ident.group, ident.unit, ident.seed,
                               ident.submitted, ident.family, inputs, labels, numeric_summary(run.summary),
                               dict(ident.overrides), folder if folder is not None and folder.exists() else None))
    return out


def load(source: str, *, results: str | Path | None = None, wandb_dir: str | Path | None = None,
         wandb_path: str | None = None, groups: list[str] | None = None,
         cache: str | Path | None = None) -> Runs:
    """Dispatch on the back end name: "store" | "wandb-offline" | "wandb-api"."""
    if source == "store":
        from actlab.post.store_source import load_store
        if results is None:
            raise ValueError("source store needs a results root")
        return load_store(results)
    if source == "wandb-offline":
        from actlab.post.wandb_offline import load_offline
        if wandb_dir is None:
            raise ValueError("source wandb-offline needs a W&B directory")
        return load_offline(wandb_dir, results_root=results)
    if source == "wandb-api":
        from actlab.post.wandb_api import load_api
        if not wandb_path or not groups:
            raise ValueError("source wandb-api needs a project path (entity/project) and groups")
        return load_api(wandb_path, groups, cache=cache, results_root=results)
    raise ValueError(f"unknown source {source!r}: store | wandb-offline | wandb-api")

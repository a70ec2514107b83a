"""A whole experiment: [pretraining] -> stream arrays -> transfer evaluation -> aggregation.

Slurm (`cluster.executor: slurm`): every step is a job, submitted at once with dependencies, and
nothing waits on the login node:
  pretrain     `jobs/pretrain.py`, when the experiment says `pretrain: true`
  streams      the grid's arrays (the frozen reference included when the grid has none),
               `afterok:<pretrain>`
  transfer     `jobs/transfer.py experiment=<exp>`, `afterok` on every stream array (skipped when
               the experiment's `transfer` is none)
  aggregate    `postprocess/to_latex.py --sweep <sweep> --out <sweep>/report`, `afterany` on
               everything before it, so a report is written even when some streams failed
Every job runs the scripts of the sweep's code snapshot (code/jobs, code/postprocess, code/src),
with the sweep's `paths.*` task overrides and its paths.root, and asks `--kill-on-invalid-dep=yes`
(a job whose `afterok` can no longer be met is cancelled instead of pending forever, which lets
the `afterany` aggregation run). Logs: <sweep>/logs/.
`local`: the same steps as processes, in order, blocking.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from actlab.launch import manifest as mf
from actlab.launch.grid import compose_task
from actlab.launch.submit import (REPO, _executor, _plain, _plain_list, cluster_env, prepare,
                                  slurm_parameters, submit_rows)

PIPELINE = "pipeline.json"
REPORT = "report"


@dataclass
class Step:
    name: str               # pretrain | transfer | aggregate
    argv: list[str]         # run from the sweep folder, PYTHONPATH = the snapshot's src
    job_id: str | None = None
    log: str | None = None


@dataclass
class Pipeline:
    sweep: str
    pretrain: Step | None
    arrays: list[str] = field(default_factory=list)
    transfer: Step | None = None
    aggregate: Step | None = None

    @property
    def report_dir(self) -> Path:
        return Path(self.sweep) / REPORT


def hydra_value(value: str) -> str:
    """A string as a quoted Hydra override value: paths with spaces or `=` stay one value."""
    return json.dumps(str(value))


def run_command(argv: list[str], cwd: str) -> str:
    """What the transfer / aggregation / pretraining jobs run (submitit pickles it): one script."""
    print(f"actlab pipeline: {argv}", flush=True)
    rc = subprocess.run(argv, cwd=cwd).returncode
    if rc != 0:
        raise RuntimeError(f"{Path(argv[1]).name} exited with {rc}")
    return "ok"


def plan(sweep: Path, manifest: mf.Manifest, python: str, task_overrides: list[str]) -> Pipeline:
    """The commands of the non-array steps, from the experiment's composed config."""
    code = mf.code_dir(sweep)
    base = compose_task(code / "configs", manifest.config_name, manifest.experiment,
                        manifest.task_overrides, manifest.literals)
    # only `paths.*` concern every job; data/method overrides belong to the stream tasks
    paths_args = [o for o in task_overrides if o.lstrip("+").startswith("paths.")]
    paths_args.append(f"paths.root={hydra_value(manifest.literals['paths.root'])}")
    pretrain = None
    if base.get("pretrain"):
        pretrain = Step("pretrain", [python, "-u", str(code / "jobs" / "pretrain.py"), *paths_args])
    transfer = None
    if str(base.get("transfer") or "none") != "none":
        transfer = Step("transfer", [python, "-u", str(code / "jobs" / "transfer.py"),
                                     f"experiment={manifest.experiment}", *paths_args])
    aggregate = Step("aggregate", [python, "-u", str(code / "postprocess" / "to_latex.py"),
                                   "--sweep", str(sweep), "--out", str(sweep / REPORT)])
    return Pipeline(str(sweep), pretrain, [], transfer, aggregate)


def _write(pipe: Pipeline) -> None:
    mf.atomic_write_json(Path(pipe.sweep) / PIPELINE, asdict(pipe))


def load_pipeline(sweep: str | Path) -> Pipeline:
    d = json.loads((mf.sweep_dir(Path(sweep)) / PIPELINE).read_text())
    step = lambda s: Step(**s) if s else None  # noqa: E731 - tiny local adapter
    return Pipeline(d["sweep"], step(d["pretrain"]), d["arrays"], step(d["transfer"]), step(d["aggregate"]))


def _submit_step(sweep: Path, manifest: mf.Manifest, step: Step, dependency: str | None,
                 resources: dict[str, Any]) -> Step:
    params = slurm_parameters(manifest.cluster, resources, sweep, f"actlab-{manifest.experiment}-{step.name}")
    extra = dict(params["additional_parameters"])
    extra["kill-on-invalid-dep"] = "yes"
    if dependency:
        extra["dependency"] = dependency
    params["additional_parameters"] = extra
    job = _executor(sweep, manifest.cluster, params).submit(run_command, step.argv, str(sweep))
    step.job_id = str(job.job_id)
    step.log = str(mf.logs_dir(sweep) / f"{job.job_id}_0_log.out")
    print(f"submitted {step.name} job {job.job_id}" + (f" ({dependency})" if dependency else ""))
    return step


def _run_step(sweep: Path, step: Step) -> None:
    log = mf.logs_dir(sweep) / f"{step.name}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    step.log = str(log)
    print(f"actlab pipeline: {step.name}: {' '.join(step.argv)}", flush=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(step.argv, cwd=sweep, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_local_env(sweep))
        for line in proc.stdout:      # shown live and kept in the step's log
            sys.stdout.write(line)
            out.write(line)
        if proc.wait() != 0:
            raise RuntimeError(f"pipeline step {step.name} failed (exit {proc.returncode}); log: {log}")


def _local_env(sweep: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(mf.code_dir(sweep) / "src")}


def run_pipeline(launch_cfg: DictConfig, repo: Path = REPO) -> Pipeline:
    """Submit (Slurm) or run (local) the experiment's steps; pipeline.json in the sweep records them."""
    cluster, resources = _plain(launch_cfg.cluster), _plain(launch_cfg.resources)
    if bool(launch_cfg.dry):
        raise ValueError("pipeline: dry runs are `jobs/grid.py ... dry=1` (the arrays are the only sbatch scripts)")
    task_overrides = [str(o) for o in _plain_list(launch_cfg.get("task_overrides"))]
    sweep, manifest = prepare(str(launch_cfg.experiment), cluster, resources, job=str(launch_cfg.job),
                              config_name=str(launch_cfg.config_name), config_dir=launch_cfg.config_dir,
                              sweeps_root=launch_cfg.get("sweeps"), repo=repo, task_overrides=task_overrides,
                              pythonpath=_plain_list(launch_cfg.get("pythonpath")))
    python = cluster.get("python") or sys.executable
    pipe = plan(sweep, manifest, python, task_overrides)
    rows = list(range(len(manifest.rows)))
    if cluster["executor"] == "local":
        from actlab.launch.local import run_local

        if pipe.pretrain:
            _run_step(sweep, pipe.pretrain)
        codes = run_local(sweep, manifest, rows)
        if pipe.transfer and all(c == 0 for c in codes.values()):
            _run_step(sweep, pipe.transfer)
        _run_step(sweep, pipe.aggregate)
        _write(pipe)
        return pipe
    if cluster["executor"] != "slurm":
        raise ValueError(f"cluster.executor: {cluster['executor']!r} is not slurm or local")
    os.environ.update(cluster_env(cluster))
    light = resources | {"gpus": 0, "cpus": 1}
    after: list[str] = []
    if pipe.pretrain:
        _submit_step(sweep, manifest, pipe.pretrain, None, resources)
        after.append(pipe.pretrain.job_id)
    chunks = submit_rows(sweep, manifest, rows, dependency=f"afterok:{after[0]}" if after else None)
    pipe.arrays = [c.job_id for c in chunks]
    before = [*after, *pipe.arrays]
    if pipe.transfer:
        _submit_step(sweep, manifest, pipe.transfer, "afterok:" + ":".join(pipe.arrays), resources)
        before.append(pipe.transfer.job_id)
    _submit_step(sweep, manifest, pipe.aggregate, "afterany:" + ":".join(before), light)
    _write(pipe)
    print(f"pipeline of {manifest.experiment}: aggregation job {pipe.aggregate.job_id}; "
          f"report: {pipe.report_dir}; sweep: {sweep}")
    return pipe

"""A whole experiment: [the family's preparation steps] -> arrays -> [the family's dependent steps]
-> aggregation. `make grid` and `make run` both come here.

Slurm (`cluster.executor: slurm`): every step is a job, submitted at once with dependencies, and
nothing waits on the login node:
  before       the family's preparation steps (continual: `jobs/pretrain.py` when the experiment
               says `pretrain: true`); the arrays wait for them (`afterok`)
  arrays       the grid's tasks (the reference group included when the grid has none)
  after        the family's dependent steps (continual: `jobs/transfer.py experiment=<exp>` unless
               `transfer: none`), `afterok` on every array
  aggregate    `postprocess/to_latex.py --sweep <sweep> --out <sweep>/report`, `afterany` on
               everything before it, so a report is written even when some tasks failed
Every job runs the scripts of the sweep's code snapshot (code/jobs, code/postprocess, code/src),
with the sweep's `paths.*` task overrides and its paths.root, and asks `--kill-on-invalid-dep=yes`
(a job whose `afterok` can no longer be met is cancelled instead of pending forever, which lets
the `afterany` aggregation run). Logs: <sweep>/logs/. `dry=1` prints the arrays' sbatch scripts
and the steps, and submits nothing.
`local`: the same steps as processes, in order, blocking.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from actlab import families
from actlab.launch import manifest as mf
from actlab.launch.grid import compose_task
from actlab.launch.submit import (REPO, _executor, _plain, _plain_list, cluster_env, prepare,
                                  slurm_parameters, submit_rows)

PIPELINE = "pipeline.json"
REPORT = "report"


@dataclass
class Step:
    name: str               # the family's step name, or "aggregate"
    argv: list[str]         # run from the sweep folder, PYTHONPATH = the snapshot's src
    before: bool = False    # the arrays wait for it
    gpus: bool = True       # asks resources.gpus like the arrays; False = one CPU
    job_id: str | None = None
    log: str | None = None


@dataclass
class Pipeline:
    sweep: str
    family: str
    steps: list[Step]                       # the family's steps, before and after the arrays
    aggregate: Step
    arrays: list[str] = field(default_factory=list)

    @property
    def report_dir(self) -> Path:
        return Path(self.sweep) / REPORT

    def before(self) -> list[Step]:
        return [s for s in self.steps if s.before]

    def after(self) -> list[Step]:
        return [s for s in self.steps if not s.before]


def hydra_value(value: str) -> str:
    """A string as a quoted Hydra override value: paths with spaces or `=` stay one value."""
    return json.dumps(str(value))


def run_command(argv: list[str], cwd: str) -> str:
    """What a step's Slurm job runs (submitit pickles it): one script."""
    print(f"actlab pipeline: {argv}", flush=True)
    rc = subprocess.run(argv, cwd=cwd).returncode
    if rc != 0:
        raise RuntimeError(f"{Path(argv[2]).name} exited with {rc}")
    return "ok"


def plan(sweep: Path, manifest: mf.Manifest, python: str, task_overrides: list[str]) -> Pipeline:
    """The commands of the non-array steps, from the family and the experiment's composed config."""
    family = families.get(manifest.family)
    code = mf.code_dir(sweep)
    base = compose_task(code / "configs" / manifest.config_dir, manifest.config_name, manifest.experiment,
                        manifest.task_overrides, manifest.literals)
    # a step gets the task overrides of the keys it declares (PipelineStep.overrides: `paths.` by
    # default); method and grid overrides belong to the array tasks
    root = f"paths.root={hydra_value(manifest.literals['paths.root'])}"

    def args(step) -> list[str]:
        return [*step.args(manifest.experiment, base),
                *(o for o in task_overrides if o.lstrip("+").startswith(tuple(step.overrides))), root]

    steps = [Step(s.name, [python, "-u", str(code / s.script), *args(s)], before=s.before, gpus=s.gpus)
             for s in family.steps if s.enabled(base)]
    aggregate = Step("aggregate", [python, "-u", str(code / "postprocess" / "to_latex.py"),
                                   "--sweep", str(sweep), "--out", str(sweep / REPORT)], gpus=False)
    return Pipeline(str(sweep), family.name, steps, aggregate)


def _write(pipe: Pipeline) -> None:
    mf.atomic_write_json(Path(pipe.sweep) / PIPELINE, asdict(pipe))


def _submit_step(sweep: Path, manifest: mf.Manifest, step: Step, dependency: str | None) -> Step:
    # a step is one process with the whole allocation, never k streams or r ranks sharing it
    resources = manifest.resources | {"streams_per_gpu": 1, "tasks_per_node": 1, "nodes": 1}
    if not step.gpus:
        resources |= {"gpus": 0, "cpus": 1}
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
    dry = bool(launch_cfg.dry)
    task_overrides = [str(o) for o in _plain_list(launch_cfg.get("task_overrides"))]
    sweep, manifest = prepare(str(launch_cfg.experiment), cluster, resources, configs=launch_cfg.configs,
                              sweeps_root=launch_cfg.get("sweeps"), repo=repo, dry=dry,
                              task_overrides=task_overrides, pythonpath=_plain_list(launch_cfg.get("pythonpath")))
    python = cluster.get("python") or sys.executable
    try:
        pipe = plan(sweep, manifest, python, task_overrides)
        rows = [r.index for r in manifest.rows if not r.reused]   # reused: a completed shared reference run
        if dry:
            _print_dry(sweep, manifest, pipe, rows)
        elif cluster["executor"] == "local":
            _run_locally(sweep, manifest, pipe, rows)
        elif cluster["executor"] == "slurm":
            _submit(sweep, manifest, pipe, rows)
        else:
            raise ValueError(f"cluster.executor: {cluster['executor']!r} is not slurm or local")
    finally:
        if dry:
            shutil.rmtree(sweep, ignore_errors=True)
    return pipe


def _print_dry(sweep: Path, manifest: mf.Manifest, pipe: Pipeline, rows: list[int]) -> None:
    for step in pipe.before():
        print(f"dry run: step {step.name} (the arrays wait for it): {' '.join(step.argv[2:])}")
    if manifest.cluster["executor"] == "slurm":
        submit_rows(sweep, manifest, rows, dry=True)
    else:
        print(f"dry run: {len(rows)} tasks would run in a local pool of "
              f"{manifest.resources['array_parallelism']}; nothing run")
    for step in [*pipe.after(), pipe.aggregate]:
        print(f"dry run: step {step.name} (after the arrays): {' '.join(step.argv[2:])}")


def _run_locally(sweep: Path, manifest: mf.Manifest, pipe: Pipeline, rows: list[int]) -> None:
    from actlab.launch.local import run_local

    for step in pipe.before():
        _run_step(sweep, step)
    codes = run_local(sweep, manifest, rows)
    if all(c == 0 for c in codes.values()):
        for step in pipe.after():
            _run_step(sweep, step)
    else:
        print(f"actlab pipeline: skipping {[s.name for s in pipe.after()]}: some tasks failed", flush=True)
    _run_step(sweep, pipe.aggregate)
    _write(pipe)


def _submit(sweep: Path, manifest: mf.Manifest, pipe: Pipeline, rows: list[int]) -> None:
    os.environ.update(cluster_env(manifest.cluster))
    before = [_submit_step(sweep, manifest, s, None).job_id for s in pipe.before()]
    # without the reused rows, the rows may have gaps: then each task is given its row
    contiguous = rows == list(range(rows[0], rows[0] + len(rows))) if rows else True
    chunks = submit_rows(sweep, manifest, rows, contiguous=contiguous,
                         dependency="afterok:" + ":".join(before) if before else None)
    pipe.arrays = [c.job_id for c in chunks]
    waits = [*before, *pipe.arrays]
    for step in pipe.after():
        waits.append(_submit_step(sweep, manifest, step,
                                  "afterok:" + ":".join(pipe.arrays) if pipe.arrays else None).job_id)
    _submit_step(sweep, manifest, pipe.aggregate, "afterany:" + ":".join(waits))
    _write(pipe)
    print(f"pipeline of {manifest.experiment}: aggregation job {pipe.aggregate.job_id}; "
          f"report: {pipe.report_dir}; sweep: {sweep}")

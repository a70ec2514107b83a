"""Submit a sweep: validate the grid, fix identities, write manifest + code snapshot, submit arrays.

Slurm: submitit `SlurmExecutor.map_array`, one array job per chunk of at most MaxArraySize tasks
(MaxArraySize caps the array index, so every chunk is indexed 0..k and its tasks add the chunk's
offset), `%N` throttle = resources.array_parallelism, logs `%A_%a`, never waits for the jobs.
The tasks import the sweep's code snapshot (PYTHONPATH), not the working tree.
`task_overrides` (launch.yaml) are validated with every grid point and recorded in the manifest;
`pythonpath` adds folders to the tasks' sys.path (e.g. a custom method class).
A chunk of one task is a plain job (submitit makes no array of one), recorded as `array: false`.
`resources.streams_per_gpu: k` packs k consecutive rows into one array task (ceil(rows / k) tasks,
recorded as `tasks` in jobs.json): `task.run_rows` runs them as k processes at once on the task's
GPU. `check_streams_fit` refuses, before anything is written, a k whose memory estimate
(k x resources.gpu_mem_per_stream_gb) exceeds cluster.gpu_memory_gb.
`resources.tasks_per_node` / `nodes` make a task several ranks of one data-parallel run (launch/ranks.py).
`make grid` and `make run` go through actlab.launch.pipeline, which adds the family's steps and the
aggregation as dependent jobs.
The pre-timeout signal: submitit runs the task under `srun`, and Slurm delivers a plain
`--signal=USR2@grace` to srun steps (`B:` would signal only the batch shell, which would die of it).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from actlab import families
from actlab.identity import code_version, submit_timestamp
from actlab.launch import manifest as mf
from actlab.launch.grid import parse_task_overrides
from actlab.launch.preflight import checked_grid
from actlab.launch.ranks import check_ranks, nodes, tasks_per_node
from actlab.launch.reference import attach_shared_runs
from actlab.launch.streams import check_streams_fit, cpus_per_stream, streams_per_gpu

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Chunk:
    job_id: str
    rows: list[int]
    offset: int | None       # rows == offset + array index, when contiguous
    array: bool = True       # submitit submits a chunk of one task as a plain job (no `_<index>`)
    tasks: list[list[int]] | None = None   # streams_per_gpu > 1: the rows of each array task, in order


def prepare(experiment: str, cluster: dict[str, Any], resources: dict[str, Any], *,
            configs: str | Path | None = None, sweeps_root: str | Path | None = None,
            repo: Path = REPO, dry: bool = False, submitted: str | None = None,
            task_overrides: list[str] | None = None,
            pythonpath: list[str] | None = None) -> tuple[Path, mf.Manifest]:
    """Find the experiment's family, validate every grid point, then write the sweep folder
    (a temporary one when dry)."""
    check_streams_fit(cluster, resources)
    configs = Path(configs or repo / "configs").resolve()
    family = families.for_experiment(experiment, configs)
    check_ranks(family, resources)
    parsed = parse_task_overrides(task_overrides)
    if cluster.get("paths") and not {"paths", "+paths"} & set(parsed):   # the cluster's paths profile
        parsed = {"paths": str(cluster["paths"])} | parsed
    # stops naming the key and path of a missing or unfit input, before anything is written
    grid = checked_grid(configs / family.config_dir, experiment, family, repo, parsed)
    submitted, code = submitted or submit_timestamp(), code_version(repo)
    paths = grid.cfg.paths
    literals = {"paths.root": str(Path(paths.root).resolve())}
    results_root = Path(paths.results).resolve()
    rows = []
    for i, p in enumerate(grid.points):
        ident = p.identity(experiment, submitted, code, family.name)
        rows.append(mf.Row(index=i, overrides=p.overrides, unit=p.unit, seed=p.seed,
                           identity=ident.to_dict(), run_folder=str(ident.folder(results_root))))
    ids = [r.identity["run_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"experiment {experiment}: two grid points give the same run id (duplicate grid values?)")
    # the shared reference group (launch/reference.py): its completed runs are reused, not submitted
    rows = attach_shared_runs(rows, results_root, grid.reference_identity, grid.reference_group, dry)
    sweep = (Path(tempfile.mkdtemp(prefix="actlab-dry-")) if dry
             else mf.new_sweep(Path(sweeps_root or paths.sweeps).resolve(), experiment, submitted))
    git = mf.snapshot_code(repo, configs, sweep)
    manifest = mf.Manifest(experiment=experiment, family=family.name, submitted=submitted, code=code,
                           job=family.job, config_dir=family.config_dir, config_name=family.config_name,
                           reference_group=grid.reference_group, literals=literals, rows=rows,
                           cluster=_plain(cluster), resources=_plain(resources), git=git,
                           task_overrides=parsed, pythonpath=[str(Path(p).resolve()) for p in pythonpath or []],
                           reference_identity=grid.reference_identity)
    mf.write_manifest(sweep, manifest)
    mf.write_sweep_info(sweep, manifest, results_root)
    return sweep, manifest


def _plain(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _plain_list(value: Any) -> list[Any]:
    if value is None:
        return []
    items = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_list(value) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list, got {value!r}")
    return items


def max_array_size(cluster: dict[str, Any], dry: bool = False) -> int:
    """The profile's `max_array_size`, else the cluster's MaxArraySize (`scontrol show config`).
    A dry run on a machine that cannot ask the cluster (no Slurm, an installed but unconfigured
    one, another cluster's config) uses the profile's `dry_max_array_size` and says so."""
    if cluster.get("max_array_size"):
        return int(cluster["max_array_size"])
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60,
                             env=os.environ | cluster_env(cluster))
        why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    except FileNotFoundError:
        out, why = subprocess.CompletedProcess([], 127, "", ""), "scontrol is not installed here"
    except (OSError, subprocess.TimeoutExpired) as e:
        out, why = subprocess.CompletedProcess([], 1, "", ""), f"scontrol: {e}"
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    if not dry:
        raise RuntimeError(f"MaxArraySize not found in `scontrol show config` ({why}); "
                           f"set cluster.max_array_size in the cluster profile")
    if not cluster.get("dry_max_array_size"):
        raise RuntimeError(f"dry run: cannot ask the cluster for MaxArraySize ({why}); set "
                           f"cluster.dry_max_array_size (or cluster.max_array_size) in the cluster profile")
    assumed = int(cluster["dry_max_array_size"])
    print(f"dry run: cannot ask the cluster for MaxArraySize ({why}); "
          f"using cluster.dry_max_array_size = {assumed} from the cluster profile")
    return assumed


def cluster_env(cluster: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (cluster.get("env") or {}).items()}


def chunks(rows: list[int], size: int) -> list[list[int]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def slurm_parameters(cluster: dict[str, Any], resources: dict[str, Any], sweep: Path,
                     job_name: str) -> dict[str, Any]:
    gpus = int(resources.get("gpus") or 0)
    partition = cluster.get("gpu_partition") if gpus else cluster.get("partition")
    setup = [str(line) for line in cluster.get("setup") or []]
    setup += [f"export {k}={shlex.quote(v)}" for k, v in cluster_env(cluster).items()]
    setup.append(f"export PYTHONPATH={shlex.quote(str(mf.code_dir(sweep) / 'src'))}")
    per_stream = cpus_per_stream(int(resources["cpus"]), resources)
    if "OMP_NUM_THREADS" not in cluster_env(cluster):   # torch's thread pool = the CPUs of one stream
        setup.append(f"export OMP_NUM_THREADS={per_stream}")
    # what actlab.device sizes a stream's threads and loader workers from (SLURM_CPUS_PER_TASK // k)
    setup.append(f"export ACTLAB_CPUS_PER_STREAM={per_stream}")
    extra: dict[str, Any] = {}
    if gpus:
        extra["gres"] = str(cluster["gres"]).format(gpus=gpus)
    extra.update(cluster.get("sbatch") or {})
    ranks = tasks_per_node(resources)
    params: dict[str, Any] = dict(
        job_name=job_name, cpus_per_task=per_stream if ranks > 1 else int(resources["cpus"]),
        mem=f"{int(resources['mem_gb'])}G",
        time=int(resources["time_min"]), array_parallelism=int(resources["array_parallelism"]),
        signal_delay_s=int(resources["signal_grace_s"]), setup=setup, use_srun=True,
        additional_parameters=extra)
    if ranks > 1 or nodes(resources) > 1:     # DDP: srun starts the ranks, each with its share of the node
        params |= {"nodes": nodes(resources), "ntasks_per_node": ranks}
    for key in ("partition", "account", "qos"):
        value = partition if key == "partition" else cluster.get(key)
        if value:
            params[key] = str(value)
    return params


def _drop_wckey(script: str) -> str:
    """submitit always writes `--wckey=submitit`; clusters without wckeys (BlueCrystal) want none."""
    return "\n".join(line for line in script.splitlines() if not line.startswith("#SBATCH --wckey"))


def _executor(sweep: Path, cluster: dict[str, Any], params: dict[str, Any]):
    import submitit

    class Executor(submitit.SlurmExecutor):
        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return mf.scrub(_drop_wckey(super()._make_submission_file_text(command, uid)))

    ex = Executor(folder=mf.logs_dir(sweep), max_num_timeout=0, python=cluster.get("python") or sys.executable)
    ex.update_parameters(**params)
    return ex


def sbatch_script(sweep: Path, cluster: dict[str, Any], params: dict[str, Any], n: int) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    python = cluster.get("python") or sys.executable
    folder = mf.logs_dir(sweep)
    command = " ".join([shlex.quote(python), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return mf.scrub(_drop_wckey(_make_sbatch_string(command=command, folder=folder, map_count=n, **params)))


def submit_rows(sweep: Path, manifest: mf.Manifest, rows: list[int], *, dry: bool = False,
                contiguous: bool = True, dependency: str | None = None) -> list[Chunk]:
    """Submit `rows` of the manifest as arrays of at most MaxArraySize; prints ids and sizes.

    contiguous: chunk tasks find their row as offset + SLURM_ARRAY_TASK_ID (the initial submission);
    otherwise (resubmission of scattered rows) each task is given its row.
    resources.streams_per_gpu = k > 1: each task is given its k consecutive rows of `rows`.
    """
    from actlab.launch.task import run_row, run_rows, run_slurm_task

    cluster, resources = manifest.cluster, manifest.resources
    env = cluster_env(cluster)
    os.environ.update(env)   # sbatch/squeue/sacct of submitit use SLURM_CONF from here
    limit = max_array_size(cluster, dry)
    params = slurm_parameters(cluster, resources, sweep, f"actlab-{manifest.experiment}")
    if dependency:   # e.g. afterok:<pretraining job>; never pending forever on a failed dependency
        params["additional_parameters"] = dict(params["additional_parameters"]) | {
            "dependency": dependency, "kill-on-invalid-dep": "yes"}
    k = streams_per_gpu(resources)
    tasks = chunks(rows, k)      # one array task runs k rows at once on its GPU
    per_gpu = f", {k} per GPU" if k > 1 else ""
    out: list[Chunk] = []
    parts = chunks(tasks, limit)   # MaxArraySize caps the number of tasks, not of rows
    for packed in parts:
        part = [r for task in packed for r in task]
        if dry:
            print(f"--- array of {len(packed)} tasks (rows {part[0]}..{part[-1]}{per_gpu}), sbatch script:")
            print(sbatch_script(sweep, cluster, params, len(packed)))
            continue
        ex = _executor(sweep, cluster, params)
        path = str(sweep / mf.MANIFEST)
        if k > 1:
            jobs = ex.map_array(run_rows, [path] * len(packed), packed)
        elif len(part) == 1:   # submitit makes no array of one: the task is given its row
            jobs = ex.map_array(run_row, [path], part)
        elif contiguous:
            jobs = ex.map_array(run_slurm_task, [path] * len(part), [part[0]] * len(part))
        else:
            jobs = ex.map_array(run_row, [path] * len(part), part)
        array_id = jobs[0].job_id.split("_")[0]
        out.append(Chunk(job_id=array_id, rows=part,
                         offset=part[0] if contiguous and k == 1 and len(part) > 1 else None,
                         array=len(packed) > 1, tasks=packed if k > 1 else None))
        print(f"submitted array {array_id}: {len(packed)} tasks (rows {part[0]}..{part[-1]}{per_gpu}, "
              f"%{min(len(packed), int(resources['array_parallelism']))})")
    if not dry:
        mf.append_jobs(sweep, [{"kind": "slurm", "job_id": c.job_id, "rows": c.rows, "offset": c.offset,
                                "array": c.array, "submitted": submit_timestamp()}
                               | ({"tasks": c.tasks} if c.tasks else {}) for c in out])
    streams = f" ({len(rows)} rows, {k} streams per GPU)" if k > 1 else ""
    print(f"{'dry run, nothing submitted: ' if dry else ''}{len(tasks)} tasks{streams} in {len(parts)} "
          f"array(s) of <= {limit} (MaxArraySize); sweep: {sweep}")
    return out

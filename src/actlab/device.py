"""Where and how a job computes: device, determinism, precision, CPU share, distributed ranks.

Every job reads the same keys (configs/run.yaml): `device: auto|cpu|cuda|cuda:<i>` (auto = the
visible GPU, else the CPU), `deterministic` (exact requeue equivalence on CUDA, see
`set_determinism`), `precision: fp32|bf16|fp16` (autocast; fp16 adds a GradScaler whose state the
jobs checkpoint), `threads` (this process's CPU share: the Slurm allocation, split among the k
streams of a GPU) with the jobs' `num_workers` (`auto`: sized from that share, `cpu_plan`), and
`prefetch_factor`. docs/gpu.md says what each does on a GPU node.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# cuBLAS needs a fixed workspace to be deterministic; it reads this when it creates its handle,
# i.e. at the first CUDA matmul, so it must be in the environment before that.
CUBLAS_WORKSPACE = ":4096:8"
CPUS_PER_STREAM_ENV = "ACTLAB_CPUS_PER_STREAM"   # set by the launcher (launch/task.py) for k rows per GPU


def resolve_device(spec: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` -> cuda:<local rank> (or the current CUDA device) when a GPU is visible, else cpu.

    An explicit `cuda` without a visible GPU is an error, not a silent CPU run of hours."""
    text = str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={spec!r}, but no GPU is visible to this process "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                               f"use device=auto or device=cpu")
        if ":" in text:
            return torch.device(text)
        index = local_rank if local_rank is not None else torch.cuda.current_device()
        return torch.device("cuda", index)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, got {spec!r}")


def set_determinism(deterministic: bool) -> None:
    """Deterministic kernels (exact resume on CUDA) or the fastest ones (cuDNN benchmark).

    Ops without a deterministic CUDA kernel warn (warn_only) rather than stop the job: SlowFast's
    global pooling backward is one, and its 1x1x1 output makes the atomic adds order-free."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
        log.warning("deterministic=false: cuDNN picks kernels by timing, so results are only statistically "
                    "reproducible (a resumed run is close to, not identical with, an uninterrupted one)")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 on `device` (CPU autocast included); fp32 = no autocast."""
    dtype = PRECISIONS[check_precision(precision)]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (bf16 has fp32's range and needs none); disabled otherwise."""
    return torch.amp.GradScaler(device.type, enabled=check_precision(precision) == "fp16")


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested dict/list/tuple) batch on `device`; other leaves unchanged.

    non_blocking: a pinned CPU tensor's copy overlaps the next kernels; an unpinned one is synchronous."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def module_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters (or buffers) live; cpu for a module without either."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


# -- CPUs of the allocation -------------------------------------------------------------------
def cpu_share() -> int:
    """This process's CPUs: ACTLAB_CPUS_PER_STREAM (set by the launcher for a task running k rows on
    one GPU: the task's CPUs // k), else SLURM_CPUS_PER_TASK, else 1 (several local jobs share a
    laptop's cores, and more threads than cores spin-wait)."""
    return max(1, int(os.environ.get(CPUS_PER_STREAM_ENV) or os.environ.get("SLURM_CPUS_PER_TASK") or 1))


@dataclass(frozen=True)
class CpuPlan:
    threads: int       # torch intra-op threads of the main process
    workers: int       # DataLoader worker processes


def cpu_plan(device: torch.device, share: int | str | None = None, workers: int | str = "auto") -> CpuPlan:
    """Loader workers and torch threads within this process's CPU share (`threads` in configs/run.yaml).

    `workers: auto`: on a GPU the main process only feeds the device, so the share goes to decoding
    workers with one core left to the main process; on the CPU the main process computes, so no
    workers (decoding and compute would take turns on the same cores). Torch threads get what the
    workers leave, at least one."""
    cpus = cpu_share() if share in (None, "auto") else max(1, int(share))
    w = (max(0, cpus - 1) if device.type == "cuda" else 0) if str(workers) == "auto" else int(workers)
    return CpuPlan(threads=max(1, cpus - w), workers=w)


def loader_options(device: torch.device, workers: int, prefetch_factor: int | None = None) -> dict[str, Any]:
    """DataLoader keywords: pinned memory on CUDA (so copies can be non-blocking), prefetch depth
    per worker (only meaningful with workers)."""
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0 and prefetch_factor is not None:
        options["prefetch_factor"] = int(prefetch_factor)
    return options


# -- distributed ranks (torchrun or srun) -----------------------------------------------------
@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_env(env: dict[str, str] | None = None) -> Ranks:
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK, else srun's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID
    (only when srun started more than one task), else a single process."""
    env = dict(os.environ) if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        return Ranks(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return Ranks()


def init_distributed(device: str = "auto", env: dict[str, str] | None = None) -> Ranks:
    """Join the process group when several ranks were started (NCCL on GPUs, gloo on CPUs).

    Under srun the rendezvous is the first node of the job (its NodeAddr) on a port derived from the job id
    (MASTER_ADDR / MASTER_PORT, unless already set); torchrun sets them itself."""
    import torch.distributed as dist

    env = dict(os.environ) if env is None else env
    ranks = ranks_from_env(env)
    if ranks.world_size == 1 or (dist.is_available() and dist.is_initialized()):
        return ranks
    if "MASTER_ADDR" not in env:
        os.environ["MASTER_ADDR"] = _first_host(env["SLURM_JOB_NODELIST"])
    if "MASTER_PORT" not in env:
        os.environ["MASTER_PORT"] = str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    on_gpu = str(device) != "cpu" and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if on_gpu else "gloo", rank=ranks.rank, world_size=ranks.world_size)
    log.info("distributed: rank %d of %d (local rank %d), backend %s", ranks.rank, ranks.world_size,
             ranks.local_rank, dist.get_backend())
    return ranks


def _first_host(nodelist: str) -> str:
    """The address of the job's first node: its NodeAddr (what Slurm itself connects to; a NodeName
    need not resolve, e.g. the local test cluster's `localnode`), else the name."""
    import subprocess

    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    first = out.stdout.split()[0]
    node = subprocess.run(["scontrol", "show", "node", "-o", first], capture_output=True, text=True)
    for field in node.stdout.split():
        key, _, value = field.partition("=")
        if key == "NodeAddr" and value:
            return value
    return first


# -- one call per job -------------------------------------------------------------------------
@dataclass(frozen=True)
class Compute:
    device: torch.device
    deterministic: bool
    precision: str
    threads: int
    workers: int
    prefetch_factor: int | None

    def loader(self) -> dict[str, Any]:
        return loader_options(self.device, self.workers, self.prefetch_factor)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)


def setup(cfg: Any, workers: int | str = 0, local_rank: int | None = None) -> Compute:
    """Determinism first (before any CUDA call), then the device, threads and workers; logged.

    `cfg` holds device, deterministic, precision, threads (the CPU share), prefetch_factor, each
    optional (defaults: auto, deterministic, fp32, `cpu_share()`, torch's); `workers` is the job's
    configured loader worker count or `auto`."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    deterministic = bool(get("deterministic", True))
    set_determinism(deterministic)
    device = resolve_device(get("device", "auto"), local_rank)
    precision = check_precision(str(get("precision", "fp32")))
    plan = cpu_plan(device, get("threads", None), workers)
    torch.set_num_threads(plan.threads)
    prefetch = get("prefetch_factor", None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log.info("compute: device %s (%s), precision %s, deterministic %s, %d thread(s), %d loader worker(s)",
             device, name, precision, deterministic, plan.threads, plan.workers)
    return Compute(device, deterministic, precision, plan.threads, plan.workers,
                   None if prefetch is None else int(prefetch))


def loop_options(cfg: Any) -> dict[str, Any]:
    """The `LoopConfig` keys of configs/run.yaml (device, precision, deterministic, prefetch_factor)
    from a job's config; a config without them runs as before (auto = the CPU on a machine without
    a GPU; deterministic None = torch's settings left alone)."""
    deterministic, prefetch = cfg.get("deterministic"), cfg.get("prefetch_factor")
    return {"device": str(cfg.get("device") or "auto"), "precision": str(cfg.get("precision") or "fp32"),
            "deterministic": None if deterministic is None else bool(deterministic),
            "prefetch_factor": None if prefetch is None else int(prefetch)}

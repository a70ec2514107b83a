"""Several processes per array task: data-parallel training (DDP) over the GPUs of one or more nodes.

`resources.tasks_per_node: r` and `resources.nodes: n` (Slurm's own names) make each array task an
allocation of n nodes with r processes (ranks) on each; `resources.gpus` is the GPUs of one node, one
per rank, so on GPU nodes it equals r. Slurm starts the ranks (the task's `srun` step, with
`--ntasks-per-node`), the job joins them (`actlab.device.init_distributed`, rendezvous on the first
node) and the shared training loop cuts each global batch among them (docs/gpu.md). `resources.cpus`
stays the CPUs of a node: each rank gets cpus // r. The local executor starts r ranks with torchrun.

Only a family whose job runs as ranks (`Family.distributed`: rank 0 writes, the others follow)
may ask for more than one; everything else is refused before a sweep folder is written.
"""
from __future__ import annotations

from typing import Any

from actlab.family import Family


def _count(resources: dict[str, Any], key: str) -> int:
    value = resources.get(key)
    return 1 if value is None else int(value)


def tasks_per_node(resources: dict[str, Any]) -> int:
    return _count(resources, "tasks_per_node")


def nodes(resources: dict[str, Any]) -> int:
    return _count(resources, "nodes")


def world_size(resources: dict[str, Any]) -> int:
    return tasks_per_node(resources) * nodes(resources)


def check_ranks(family: Family, resources: dict[str, Any]) -> None:
    """Refuse resources that would start ranks the job cannot use, or GPUs no rank uses, naming the keys."""
    r, n = tasks_per_node(resources), nodes(resources)
    gpus, cpus = int(resources.get("gpus") or 0), int(resources.get("cpus") or 1)
    k = int(resources.get("streams_per_gpu") or 1)
    problems = []
    if r < 1 or n < 1:
        problems.append(f"resources.tasks_per_node={r}, resources.nodes={n}: both must be at least 1")
    elif r * n > 1:
        if not family.distributed:
            problems.append(f"resources.tasks_per_node={r} x resources.nodes={n} ranks: the {family.name} family's "
                            f"job runs as one process (its Family does not declare distributed=True)")
        if gpus and gpus != r:
            problems.append(f"resources.gpus={gpus} GPUs per node for resources.tasks_per_node={r} ranks per node: "
                            f"each rank trains on one GPU, so set resources.gpus={r}")
        if cpus < r:
            problems.append(f"resources.cpus={cpus} is less than resources.tasks_per_node={r}: each rank needs a CPU")
        if k > 1:
            problems.append(f"resources.streams_per_gpu={k} with {r * n} ranks: a task is either k streams on one GPU "
                            f"or one data-parallel run, not both")
    if gpus > 1 and r == 1 and k == 1:
        problems.append(f"resources.gpus={gpus} for one process: it would compute on one GPU and hold the others idle; "
                        f"set resources.tasks_per_node={gpus} (data-parallel, families that support it) or "
                        f"resources.gpus=1")
    if problems:
        raise ValueError("ranks per task: stopped before writing or submitting anything:\n  " + "\n  ".join(problems))

"""Several streams per GPU: `resources.streams_per_gpu: k` runs k manifest rows at once in one array
task, one process each, sharing the task's GPU and splitting its CPUs (`task.run_rows`).

Upstream ran NUM_USERS_PER_DEVICE user streams on one GPU: a SlowFast R101 stream at batch 4 holds
about 17 GB, so an 80-141 GB GPU holds several. The launcher cannot measure a stream before it runs,
so the check uses an estimate: k x `resources.gpu_mem_per_stream_gb` must fit in
`cluster.gpu_memory_gb` (the memory of one GPU of the profile's GPU partition).
"""
from __future__ import annotations

from typing import Any


def streams_per_gpu(resources: dict[str, Any]) -> int:
    return int(resources.get("streams_per_gpu") or 1)


def cpus_per_stream(cpus: int, resources: dict[str, Any]) -> int:
    """Torch threads and DataLoader workers of one process: the node's CPUs split among its k streams
    (or among its ranks, resources.tasks_per_node; launch/ranks.py refuses both at once)."""
    return max(1, int(cpus) // (streams_per_gpu(resources) * int(resources.get("tasks_per_node") or 1)))


def check_streams_fit(cluster: dict[str, Any], resources: dict[str, Any]) -> None:
    """Refuse `resources.streams_per_gpu` where k streams do not fit one GPU (or one task), naming the
    keys, their values and the estimate; raised before a sweep folder is written or a job submitted."""
    k = streams_per_gpu(resources)
    per, total = resources.get("gpu_mem_per_stream_gb"), cluster.get("gpu_memory_gb")
    gpus, cpus = int(resources.get("gpus") or 0), int(resources.get("cpus") or 1)
    problems = []
    if k < 1:
        problems.append(f"resources.streams_per_gpu={k}: must be at least 1")
    if k > 1 and gpus != 1:
        problems.append(f"resources.streams_per_gpu={k} runs {k} streams on the one GPU of a task: it needs "
                        f"resources.gpus=1, not {gpus}")
    if k > 1 and cpus < k:
        problems.append(f"resources.cpus={cpus} is less than resources.streams_per_gpu={k}: each stream "
                        f"needs a CPU of its own (ARGS=\"resources.cpus=...\")")
    if k > 1 and per is None:
        problems.append(f"resources.gpu_mem_per_stream_gb is not set: resources.streams_per_gpu={k} needs the "
                        f"GPU memory estimate of one stream (about 17 for SlowFast R101 at batch 4; "
                        f"ARGS=\"resources.gpu_mem_per_stream_gb=...\")")
    if k > 1 and total is None:
        problems.append(f"cluster.gpu_memory_gb is not set in cluster profile {cluster.get('name')}: "
                        f"resources.streams_per_gpu={k} needs the memory of one GPU (ARGS=\"cluster.gpu_memory_gb=...\")")
    if gpus >= 1 and k >= 1 and per is not None and total is not None and k * float(per) > float(total):
        fit = int(float(total) // float(per))
        advice = (f"at most {fit} stream(s) per GPU (ARGS=\"resources.streams_per_gpu={fit}\")" if fit
                  else "not even one stream fits: a GPU partition with more memory, or a smaller batch")
        problems.append(f"estimated GPU memory {k * float(per):g} GB = resources.streams_per_gpu={k} x "
                        f"resources.gpu_mem_per_stream_gb={float(per):g} does not fit cluster.gpu_memory_gb="
                        f"{float(total):g} (cluster {cluster.get('name')}): {advice}")
    if problems:
        raise ValueError("streams per GPU: stopped before writing or submitting anything:\n  " + "\n  ".join(problems))

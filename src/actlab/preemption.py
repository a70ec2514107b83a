"""Checkpoint-and-stop on demand, for Slurm requeue.

`install_handlers()` makes SIGUSR2 and SIGTERM set a flag; the stream loop polls `requested()` at
each batch boundary, then writes a checkpoint and returns `interrupted=True` (the stream job then
exits with `REQUEUE_EXIT_CODE`, leaves status "running", and the next start resumes). Use
`#SBATCH --signal=USR2@<seconds>` so there is time to write the checkpoint.
"""
from __future__ import annotations

import signal
import threading

REQUEUE_EXIT_CODE = 3        # "stopped on request, resumable": distinct from success and crashes
_flag = threading.Event()


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _flag.set()


def install_handlers(signals: tuple[int, ...] = (signal.SIGUSR2, signal.SIGTERM)) -> None:
    for s in signals:
        signal.signal(s, _handler)


def requested() -> bool:
    return _flag.is_set()


def requested_anywhere() -> bool:
    """A signal reached this process or, with several ranks, any of them: every rank gets the same
    verdict on why a fit stopped (a signal may reach one rank only). A collective: all ranks call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return requested()
    flags: list[bool | None] = [None] * dist.get_world_size()
    dist.all_gather_object(flags, requested())
    return any(flags)


def clear() -> None:
    _flag.clear()


class Preempted(Exception):
    """Raised by a job that checkpointed and stopped on request; resubmitting it resumes.

    `jobs/stream.py` turns it into exit code REQUEUE_EXIT_CODE; a launcher calling the library in
    process (submitit) catches it and requeues.
    """

    def __init__(self, folder) -> None:
        super().__init__(f"stopped on request at a batch boundary; checkpoint in {folder}")
        self.folder = folder

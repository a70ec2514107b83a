"""One writer per run folder: `<run folder>/lease.json`, taken by exclusive creation.

A Slurm requeue racing the incarnation Slurm has not finished killing, or a hand rerun beside the
array, would otherwise write the same checkpoint and result files. Taking: the holder record is
written to a uniquely named file in the folder, then hard-linked to `lease.json` (atomic on NFS,
unlike O_EXCL on old clients); a retried link whose first try worked reports EEXIST, so success is
"the temp file now has two links". While held, a daemon thread touches the lease every heartbeat_s.

Stale-lease rule: a lease is stale when (a) it names this host and its pid no longer exists, or
(b) its heartbeat (mtime) is older than stale_after_s (600 s = 20 missed beats; NFS server and node
clocks differ by seconds, not minutes), or (c) it names a Slurm job and `squeue -h -j <job>` exits
0 and prints nothing; any other squeue answer proves nothing. Nothing else breaks a live lease, not
even a requeued task of the same array element (same job id, other node): the old incarnation may
still be writing. A stale lease is renamed to a unique name (one rename wins, so two breakers cannot
both win), checked to be the one judged stale (else put back), then taken again by the link.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from actlab import slurm
from actlab.atomic import atomic_write_json

LEASE = "lease.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseHolder:
    host: str
    pid: int
    slurm_job: str | None   # "<array job>_<task>" or "<job>"; None outside Slurm
    started: str            # ISO 8601 UTC, when the lease was taken
    token: str              # tells this holding apart from any other, even by the same process

    @classmethod
    def me(cls) -> LeaseHolder:
        return cls(socket.gethostname(), os.getpid(), _slurm_job(),
                   datetime.now(timezone.utc).isoformat(timespec="seconds"), secrets.token_hex(8))


class LeaseHeld(RuntimeError):
    def __init__(self, folder: Path, holder: LeaseHolder, heartbeat_age_s: float):
        self.folder, self.holder = folder, holder
        super().__init__(
            f"run folder {folder} is in use by host {holder.host}, pid {holder.pid}, Slurm job "
            f"{holder.slurm_job or '(none)'}, since {holder.started} (last heartbeat "
            f"{heartbeat_age_s:.0f} s ago). If you are sure that process is gone, delete {folder / LEASE}")


class RunLease:
    def __init__(self, folder: str | os.PathLike, *, wait_s: float = 0.0, poll_s: float = 2.0,
                 heartbeat_s: float = 30.0, stale_after_s: float = 600.0):
        self.folder, self.path = Path(folder), Path(folder) / LEASE
        self.wait_s, self.poll_s, self.heartbeat_s, self.stale_after_s = wait_s, poll_s, heartbeat_s, stale_after_s
        self._mine: LeaseHolder | None = None
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def __enter__(self) -> RunLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease, breaking a stale one; wait up to `wait_s` for a live one to go away."""
        deadline = time.monotonic() + self.wait_s
        me = LeaseHolder.me()
        while not self._take(me):
            seen = self._read()
            if seen is None:
                continue    # released between our link and our read: try again at once
            holder, age = seen
            if self._stale(holder, age):
                self._remove_if(holder.token)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise LeaseHeld(self.folder, holder, age)
            time.sleep(min(self.poll_s, left))
        self._mine = me
        self._stop.clear()
        self._beater = threading.Thread(target=self._beat, args=(me.token,), name="lease-heartbeat", daemon=True)
        self._beater.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it still holds our token."""
        if self._mine is None:
            return
        self._stop.set()
        self._beater.join()
        seen = self._read()
        if seen is not None and seen[0].token == self._mine.token:
            self._remove_if(self._mine.token)
        self._mine = None

    def holder(self) -> LeaseHolder | None:
        seen = self._read()
        return seen[0] if seen else None

    def _take(self, me: LeaseHolder) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{LEASE}.{me.host}.{me.pid}.{me.token}"
        atomic_write_json(tmp, asdict(me))
        try:
            return _link(tmp, self.path)
        finally:
            tmp.unlink()

    def _read(self) -> tuple[LeaseHolder, float] | None:
        """The holder and the heartbeat's age in seconds; None when there is no lease."""
        try:
            with open(self.path) as f:   # one open file, so record and mtime are of the same lease
                return LeaseHolder(**json.loads(f.read())), time.time() - os.fstat(f.fileno()).st_mtime
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESTALE):   # ESTALE: NFS, removed while we opened it
                return None
            raise

    def _stale(self, holder: LeaseHolder, age_s: float) -> bool:
        return ((holder.host == socket.gethostname() and not _pid_alive(holder.pid))
                or age_s > self.stale_after_s
                or (holder.slurm_job is not None and _slurm_job_gone(holder.slurm_job)))

    def _remove_if(self, token: str) -> None:
        aside = self.folder / f".{LEASE}.{secrets.token_hex(8)}.removed"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            if not aside.exists():   # NFS: a retried rename that had worked reports ENOENT
                return               # someone else removed it first
        try:
            if json.loads(aside.read_text())["token"] != token:
                # It changed hands between our look and our rename: put it back. Only if a third
                # process took the empty slot in that instant does the displaced holder lose it.
                _link(aside, self.path)
        finally:
            aside.unlink()

    def _beat(self, token: str) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                seen = self._read()
                if seen is None or seen[0].token != token:
                    log.warning("lease %s is no longer ours: another process may write here", self.path)
                    return
                os.utime(self.path)
            except OSError as e:
                # One missed beat is harmless (staleness takes many); a dead thread would not be.
                log.warning("lease heartbeat on %s failed: %s", self.path, e)


def _link(src: Path, dst: Path) -> bool:
    """Hard-link `src` to `dst` unless `dst` exists; True when this call made the link."""
    try:
        os.link(src, dst)
    except OSError as e:
        made = os.stat(src).st_nlink == 2
        if not made and e.errno != errno.EEXIST:
            raise   # e.g. a filesystem without hard links: fail, rather than wait forever
        return made
    return True


def _slurm_job() -> str | None:
    # SLURM_JOB_ID marks a real job: the local launcher gives its processes array-like variables
    # but strips SLURM_JOB*, and squeue must not be asked about those made-up ids.
    job = os.environ.get("SLURM_JOB_ID")
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if job and array_job and task else job or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another account
        return True
    return True


def _slurm_job_gone(job: str) -> bool:
    return slurm.job_gone(job)

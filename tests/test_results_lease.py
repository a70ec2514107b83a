"""One writer per run folder: races between real processes, stale-lease breaking, heartbeat."""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from actlab.atomic import atomic_write_json
from actlab.results.lease import LEASE, LeaseHeld, LeaseHolder, RunLease

ROUNDS = 20


# -- workers: module-level so that spawned processes can import them ---------------------------

def _race_no_wait(root: str, rounds: int, barrier, results) -> None:
    """Each round: start with the other worker, try once; the winner holds until both have tried."""
    for i in range(rounds):
        folder = Path(root) / f"run{i}"
        lease = RunLease(folder)
        barrier.wait()
        try:
            lease.acquire()
        except LeaseHeld as e:
            barrier.wait()
            results.put((i, os.getpid(), "held", e.holder.pid, str(e)))
            continue
        with open(folder / "writes.txt", "a") as f:
            f.write(f"{os.getpid()}\n")
        barrier.wait()   # the other one tries while we still hold the lease
        lease.release()
        results.put((i, os.getpid(), "won", None, ""))


def _race_wait(root: str, holds: list[float], barrier, results) -> None:
    """Each round: start with the other worker and wait for the lease; write begin/end while held."""
    for i, hold_s in enumerate(holds):
        folder = Path(root) / f"run{i}"
        barrier.wait()
        with RunLease(folder, wait_s=30, poll_s=0.02):
            for mark in ("begin", "end"):
                with open(folder / "writes.txt", "a") as f:
                    f.write(f"{os.getpid()} {mark}\n")
                time.sleep(hold_s / 2)
        results.put((i, os.getpid()))


def _run_pair(target, *args, expect: int) -> list[tuple]:
    """Run `target` in two spawned processes started together; their `expect` results."""
    ctx = mp.get_context("spawn")
    # A timeout, so that one crashed worker fails the test instead of hanging the other one.
    barrier, results = ctx.Barrier(2, timeout=30), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in range(expect)]   # drain before join: see mp docs
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    return out


def _plant(folder: Path, *, host: str = "elsewhere", pid: int = 1, slurm_job: str | None = None,
           age_s: float = 0.0) -> LeaseHolder:
    """A lease written by someone else, last heartbeat `age_s` ago."""
    holder = LeaseHolder(host, pid, slurm_job, "2024-01-01T00:00:00+00:00", "theirs")
    atomic_write_json(folder / LEASE, asdict(holder))
    t = time.time() - age_s
    os.utime(folder / LEASE, (t, t))
    return holder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


# -- tests ---------------------------------------------------------------------------------------

def test_race_without_wait_has_exactly_one_winner(tmp_path):
    results = _run_pair(_race_no_wait, str(tmp_path), ROUNDS, expect=2 * ROUNDS)
    for i in range(ROUNDS):
        rnd = [r for r in results if r[0] == i]
        won = [r for r in rnd if r[2] == "won"]
        held = [r for r in rnd if r[2] == "held"]
        assert len(won) == 1 and len(held) == 1, rnd
        winner = won[0][1]
        assert held[0][3] == winner
        assert f"pid {winner}" in held[0][4] and socket.gethostname() in held[0][4]
        assert (tmp_path / f"run{i}" / "writes.txt").read_text() == f"{winner}\n"
        assert os.listdir(tmp_path / f"run{i}") == ["writes.txt"]   # lease and temp files gone


def test_race_with_wait_serialises_writers(tmp_path):
    holds = [1.0] + [0.1] * 5
    _run_pair(_race_wait, str(tmp_path), holds, expect=2 * len(holds))
    for i in range(len(holds)):
        lines = (tmp_path / f"run{i}" / "writes.txt").read_text().split("\n")[:-1]
        pids = [line.split()[0] for line in lines]
        assert [line.split()[1] for line in lines] == ["begin", "end", "begin", "end"]
        assert pids[0] == pids[1] != pids[2] == pids[3]


def test_lease_of_dead_pid_on_this_host_is_broken(tmp_path):
    _plant(tmp_path, host=socket.gethostname(), pid=_dead_pid())
    with RunLease(tmp_path) as lease:
        assert lease.holder().pid == os.getpid()
    assert os.listdir(tmp_path) == []


def test_lease_with_old_heartbeat_is_broken(tmp_path):
    _plant(tmp_path, age_s=601)
    with RunLease(tmp_path) as lease:
        assert lease.holder().pid == os.getpid()


def test_live_lease_of_another_host_is_not_broken(tmp_path):
    theirs = _plant(tmp_path, age_s=5)
    start = time.monotonic()
    with pytest.raises(LeaseHeld) as e:
        RunLease(tmp_path, wait_s=0.3, poll_s=0.05).acquire()
    assert time.monotonic() - start >= 0.3
    assert e.value.holder == theirs
    msg = str(e.value)
    assert all(s in msg for s in ("elsewhere", "pid 1", str(tmp_path), "delete"))
    assert RunLease(tmp_path).holder() == theirs


def _fake_squeue(tmp_path: Path, monkeypatch, prints: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(f"#!/bin/sh\nprintf '{prints}'\nexit 0\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_lease_of_a_job_squeue_no_longer_knows_is_broken(tmp_path, monkeypatch):
    _fake_squeue(tmp_path, monkeypatch, "")
    run = tmp_path / "run"
    run.mkdir()
    _plant(run, slurm_job="123_4", age_s=5)
    with RunLease(run) as lease:
        assert lease.holder().pid == os.getpid()


def test_requeued_task_of_the_same_job_waits_for_the_live_incarnation(tmp_path, monkeypatch):
    _fake_squeue(tmp_path, monkeypatch, "123_4 RUNNING\\n")
    monkeypatch.setenv("SLURM_JOB_ID", "130")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "123")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    run = tmp_path / "run"
    run.mkdir()
    theirs = _plant(run, slurm_job="123_4", age_s=5)
    with pytest.raises(LeaseHeld, match="Slurm job 123_4"):
        RunLease(run).acquire()
    assert RunLease(run).holder() == theirs


def test_release_keeps_a_lease_someone_else_took_after_ours_was_broken(tmp_path):
    ours = RunLease(tmp_path)
    ours.acquire()
    t = time.time() - 601
    os.utime(tmp_path / LEASE, (t, t))   # as if our heartbeats had stopped reaching the server
    theirs = RunLease(tmp_path)
    theirs.acquire()
    token = theirs.holder().token
    ours.release()
    assert theirs.holder().token == token
    theirs.release()
    assert theirs.holder() is None


def test_heartbeat_keeps_a_long_held_lease_fresh(tmp_path):
    with RunLease(tmp_path, heartbeat_s=0.05, stale_after_s=0.5):
        t = time.time() - 100
        os.utime(tmp_path / LEASE, (t, t))
        time.sleep(1.0)   # twice stale_after_s
        assert time.time() - (tmp_path / LEASE).stat().st_mtime < 0.5
        with pytest.raises(LeaseHeld):
            RunLease(tmp_path, stale_after_s=0.5).acquire()
    assert os.listdir(tmp_path) == []

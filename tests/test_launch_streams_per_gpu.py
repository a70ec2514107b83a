"""Several streams per GPU (`resources.streams_per_gpu: k`, issue 11 item 4) on the project's real
local Slurm with fake GPUs (cluster/local_slurm/start.sh, gres.conf File=/dev/null links).

Every Slurm task is a real egotoy stream job. `RowFinetune` (importable by the tasks: the sweep's
`pythonpath` holds tests/) records, per row and attempt, what its stream process saw.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_launch_slurm import (_grid, _project, _same_results, _sweep, _wait_done, data_overrides,  # noqa: F401
                               slurm)

from actlab.families.continual.methods.finetune import Finetune
from actlab.launch.streams import check_streams_fit

# k = 2 streams on the task's one (fake) GPU, 2 CPUs -> 1 thread each; 2 x 17 GB fits the 80 GB card
TWO_PER_GPU = ["resources.gpus=1", "resources.cpus=2", "resources.streams_per_gpu=2",
               "resources.gpu_mem_per_stream_gb=17"]


class RowFinetune(Finetune):
    """Finetune that appends `<attempt> <batches> <job> <cpus per stream> <threads> <time>` to
    `<marker_dir>/row<I>.txt` after each batch under Slurm (the row from the stream's `--row`), and
    sleeps `sleep_s` per batch on a task's first attempt. Neither changes any result."""

    def __init__(self, marker_dir: str, sleep_s: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        self.sleep_s, self.seen = sleep_s, 0
        self.attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        row = sys.argv[sys.argv.index("--row") + 1] if "--row" in sys.argv else "x"
        self.marker = Path(marker_dir) / f"row{row}.txt"

    def observe(self, batch) -> None:
        super().observe(batch)
        self.seen += 1
        if "SLURM_JOB_ID" not in os.environ:
            return
        import torch

        with open(self.marker, "a") as f:
            f.write(f"{self.attempt} {self.seen} {os.environ['SLURM_JOB_ID']} "
                    f"{os.environ.get('ACTLAB_CPUS_PER_STREAM')} {torch.get_num_threads()} {time.time():.3f}\n")
        if self.attempt == 0:
            time.sleep(self.sleep_s)


def _marks(marker_dir: Path, row: int) -> list[list[str]]:
    path = marker_dir / f"row{row}.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _alone(sweep: Path, row: int, results: Path) -> Path:
    """The row's grid point run alone in this process (1 thread, as each of the 2 streams), with
    another submit time and the plain method."""
    from actlab import preemption
    from actlab.families.continual.engine import stream_job
    from actlab.launch.manifest import load_manifest
    from actlab.launch.task import task_config

    cfg = task_config(load_manifest(sweep), sweep, row)
    cfg.method._target_ = "actlab.families.continual.methods.finetune.Finetune"
    del cfg.method["sleep_s"], cfg.method["marker_dir"]
    cfg.submitted, cfg.wandb.mode, cfg.paths.results = "20200101T000000Z", "disabled", str(results)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return stream_job.run(cfg)
    finally:
        torch.set_num_threads(threads)
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- the memory estimate: refused before anything is written ----------------------------------------
def test_streams_that_do_not_fit_are_refused_naming_the_estimate(tmp_path):
    slurm_gpu = {"name": "local_slurm", "gpu_memory_gb": 80}
    check_streams_fit(slurm_gpu, {"gpus": 1, "cpus": 8, "streams_per_gpu": 4, "gpu_mem_per_stream_gb": 17})  # 68 <= 80
    check_streams_fit({"name": "bluecrystal", "gpu_memory_gb": None}, {"gpus": 1, "cpus": 8})   # k = 1: as before
    with pytest.raises(ValueError) as e:
        check_streams_fit(slurm_gpu, {"gpus": 1, "cpus": 8, "streams_per_gpu": 5, "gpu_mem_per_stream_gb": 17})
    assert ("estimated GPU memory 85 GB = resources.streams_per_gpu=5 x resources.gpu_mem_per_stream_gb=17 "
            "does not fit cluster.gpu_memory_gb=80") in str(e.value)
    assert 'at most 4 stream(s) per GPU (ARGS="resources.streams_per_gpu=4")' in str(e.value)
    with pytest.raises(ValueError, match=r"cluster.gpu_memory_gb is not set in cluster profile bluecrystal"):
        check_streams_fit({"name": "bluecrystal", "gpu_memory_gb": None},
                          {"gpus": 1, "cpus": 8, "streams_per_gpu": 2, "gpu_mem_per_stream_gb": 17})
    with pytest.raises(ValueError, match=r"resources.gpu_mem_per_stream_gb is not set"):
        check_streams_fit(slurm_gpu, {"gpus": 1, "cpus": 8, "streams_per_gpu": 2})
    with pytest.raises(ValueError, match=r"resources.cpus=1 is less than resources.streams_per_gpu=2"):
        check_streams_fit(slurm_gpu, {"gpus": 1, "cpus": 1, "streams_per_gpu": 2, "gpu_mem_per_stream_gb": 1})
    with pytest.raises(ValueError, match=r"needs resources.gpus=1, not 0"):
        check_streams_fit(slurm_gpu, {"gpus": 0, "cpus": 4, "streams_per_gpu": 2, "gpu_mem_per_stream_gb": 1})
    # the launcher stops with exit 2 and the estimate before a sweep folder exists (no Slurm asked)
    out = subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), "experiment=egotoy_main", "cluster=local_slurm",
                          "resources=gpu_small", "resources.streams_per_gpu=5"], cwd=tmp_path, capture_output=True,
                         text=True, env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "estimated GPU memory 85 GB" in out.stderr and "cluster.gpu_memory_gb=80" in out.stderr, out.stderr
    assert not (tmp_path / "sweeps").exists()


# -- Slurm ---------------------------------------------------------------------------------------------
@pytest.mark.slurm
def test_dry_submit_shows_the_shrunken_array(tmp_path, slurm, data_overrides):
    # 5 lr x 1 user = 5 rows; 2 per GPU -> 3 tasks; an array of at most 2 tasks -> arrays of 2 and 1
    _project(tmp_path, "spg_dry", "  method.lr: [0.1, 0.2, 0.3, 0.4, 0.5]", "['68']")
    out = _grid(tmp_path, slurm, "spg_dry", data_overrides, "dry=1", "cluster.max_array_size=2", *TWO_PER_GPU)
    assert out.returncode == 0, out.stderr
    assert math.ceil(5 / 2) == 3
    assert "--- array of 2 tasks (rows 0..3, 2 per GPU)" in out.stdout
    assert "--- array of 1 tasks (rows 4..4, 2 per GPU)" in out.stdout
    assert "#SBATCH --array=0-1%2" in out.stdout and "#SBATCH --array=0-0%1" in out.stdout, out.stdout
    assert "#SBATCH --gres=gpu:1" in out.stdout and "#SBATCH --partition=gpu" in out.stdout
    assert "export OMP_NUM_THREADS=1" in out.stdout and "export ACTLAB_CPUS_PER_STREAM=1" in out.stdout
    assert "dry run, nothing submitted: 3 tasks (5 rows, 2 streams per GPU) in 2 array(s) of <= 2" in out.stdout
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_two_streams_per_gpu_task_requeued_resumes_both_to_their_results_alone(tmp_path, slurm, data_overrides):
    from actlab.launch.status import sweep_status

    marks = tmp_path / "marks"
    marks.mkdir()
    _project(tmp_path, "spg_rq", "", "['68', '265']")      # one point, two users: 2 rows
    out = _grid(tmp_path, slurm, "spg_rq",
                ["data.max_clips=16", "wandb.mode=disabled", *data_overrides,
                 "method._target_=test_launch_streams_per_gpu.RowFinetune", "+method.sleep_s=2.0",
                 f"+method.marker_dir={json.dumps(str(marks))}"], *TWO_PER_GPU)
    assert out.returncode == 0, out.stderr
    assert "1 tasks (rows 0..1, 2 per GPU, %1)" in out.stdout, out.stdout
    sweep = _sweep(tmp_path, "spg_rq")
    (chunk,) = json.loads((sweep / "jobs.json").read_text())
    assert chunk["tasks"] == [[0, 1]] and chunk["array"] is False
    deadline = time.time() + 100
    while not all(_marks(marks, r) for r in (0, 1)):
        assert time.time() < deadline, "the streams never got going"
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", chunk["job_id"]], check=True, env=os.environ | slurm)
    table = _wait_done(sweep, timeout=150)
    assert [(t.state, t.job) for t in table] == [("completed", chunk["job_id"])] * 2
    manifest = json.loads((sweep / "manifest.json").read_text())
    batches = 4
    firsts = []
    for row in (0, 1):
        seen = _marks(marks, row)
        # both rows ran in the one Slurm job, 2 CPUs split in 1 thread each
        assert {s[2] for s in seen} == {chunk["job_id"]} and {(s[3], s[4]) for s in seen} == {("1", "1")}, seen
        last = {int(a): max(int(s[1]) for s in seen if s[0] == a) for a, *_ in seen}
        # interrupted in attempt 0, resumed in attempt 1 from its own checkpoint
        assert sorted(last) == [0, 1] and 0 < last[0] < batches and last[0] + last[1] == batches, seen
        firsts.append([float(s[5]) for s in seen if s[0] == "0"])
        _same_results(Path(manifest["rows"][row]["run_folder"]), _alone(sweep, row, tmp_path / "alone"))
    # each was in its first attempt (a batch, then 2 s asleep) while the other was: at the same time
    assert max(map(min, firsts)) < min(map(max, firsts)) + 2.0, "the two streams did not run at the same time"
    for row in (0, 1):   # each stream's own log (appended over attempts; Slurm truncates the task's on requeue)
        log = (sweep / "logs" / f"{chunk['job_id']}_row{row}.out").read_text()
        assert log.count(f"actlab task: row {row} ") == 2 and "stopped on request at a batch boundary" in log, log
    assert [t.state for t in sweep_status(sweep)] == ["completed"] * 2


@pytest.mark.slurm
@pytest.mark.slow
def test_status_and_resubmit_stay_per_row(tmp_path, slurm, data_overrides):
    from actlab.launch.status import sweep_status
    from test_launch_slurm import FailUnless  # noqa: F401 - the tasks import it by name

    flag = tmp_path / "let_lr_02_pass"
    _project(tmp_path, "spg_fail", "  method.lr: [0.1, 0.2, 0.3]", "['68']")   # 3 rows -> tasks [0, 1], [2]
    out = _grid(tmp_path, slurm, "spg_fail",
                ["data.max_clips=8", "wandb.mode=disabled", *data_overrides,
                 "method._target_=test_launch_slurm.FailUnless", f"+method.flag={json.dumps(str(flag))}",
                 "+method.fail_lr=0.2"], *TWO_PER_GPU)
    assert out.returncode == 0, out.stderr
    assert "2 tasks (rows 0..2, 2 per GPU, %2)" in out.stdout, out.stdout
    sweep = _sweep(tmp_path, "spg_fail")
    (chunk,) = json.loads((sweep / "jobs.json").read_text())
    assert chunk["tasks"] == [[0, 1], [2]]
    table = _wait_done(sweep, timeout=300)
    job = chunk["job_id"]
    # row 1 failed its task; row 0 of the same task kept its result; the status points at row 1's own log
    assert [(t.state, t.job) for t in table] == [("completed", f"{job}_0"), ("failed", f"{job}_0"),
                                                 ("completed", f"{job}_1")]
    assert table[1].log == str(sweep / "logs" / f"{job}_0_row1.out")
    assert "failing on purpose" in Path(table[1].log).read_text()
    manifest = json.loads((sweep / "manifest.json").read_text())
    done = {r: (Path(manifest["rows"][r]["run_folder"]) / "summary.json").stat().st_mtime_ns for r in (0, 2)}
    flag.touch()
    out = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                         text=True, env=os.environ | slurm, timeout=300)
    assert out.returncode == 0 and "resubmitting rows [1]" in out.stdout, out.stdout + out.stderr
    assert "1 tasks (1 rows, 2 streams per GPU)" in out.stdout, out.stdout
    assert [t.state for t in _wait_done(sweep, timeout=300)] == ["completed"] * 3
    for row, mtime in done.items():   # not run again
        assert (Path(manifest["rows"][row]["run_folder"]) / "summary.json").stat().st_mtime_ns == mtime
    assert [t.state for t in sweep_status(sweep)] == ["completed"] * 3

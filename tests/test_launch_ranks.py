"""Several ranks per array task (`resources.tasks_per_node`, `nodes`; issue 11 item 5): the resources
check, the sbatch lines, and a real data-parallel pretraining run started by srun on the project's
local Slurm and by torchrun in the local executor (2 CPU ranks, gloo).

`rank_x3d` (importable by the tasks: the sweep's `pythonpath` holds tests/) appends
`<rank> <world> <samples>` to a marker file at each training forward, so the test sees which
processes trained and on how much of each global batch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from ddp_grid import TWO_RANKS, forwards, mark
from test_launch_slurm import PRETRAIN_TINY, _grid, _sweep, _wait_done, data_overrides, hydra_list, slurm  # noqa: F401

from actlab import families
from actlab.launch.ranks import check_ranks


def rank_x3d(marker: str, **kw):
    from actlab.families.continual.models.factory import x3d_small

    return mark(x3d_small(**kw), marker)


def _pretrain_project(tmp: Path, name: str) -> None:
    import shutil

    shutil.copytree(REPO / "configs", tmp / "configs")
    (tmp / "configs" / "continual" / "experiment" / f"{name}.yaml").write_text(
        f"# @package _global_\nfamily: pretrain\nexperiment: {name}\nseeds: [0]\nexport_to: null\n")


def _halves(seen: list[tuple[int, int, int]]) -> None:
    """Each rank trained on its shard of every global batch (batch_size 8: at most 4 samples, the two
    shards of one batch differ by at most one), the same number of steps."""
    per_rank = [[n for r, _, n in seen if r == rank] for rank in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) > 0, seen
    assert all(0 < n <= 4 for n in per_rank[0] + per_rank[1]), seen
    assert all(abs(a - b) <= 1 for a, b in zip(*per_rank)), seen


def test_ranks_are_refused_where_the_job_or_the_gpus_cannot_use_them():
    pretrain, continual = families.get("pretrain"), families.get("continual")
    check_ranks(pretrain, {"tasks_per_node": 4, "nodes": 2, "gpus": 4, "cpus": 32})       # fits
    check_ranks(continual, {"gpus": 1, "cpus": 8})                                         # one process
    for family, res, msg in [
        (continual, {"tasks_per_node": 2}, r"the continual family's job runs as one process"),
        (pretrain, {"tasks_per_node": 2, "gpus": 4, "cpus": 8}, r"resources.gpus=4 GPUs per node for "
                                                                  r"resources.tasks_per_node=2 .* set resources.gpus=2"),
        (pretrain, {"gpus": 2, "cpus": 8}, r"resources.gpus=2 for one process: .* resources.tasks_per_node=2"),
        (pretrain, {"tasks_per_node": 2, "cpus": 1}, r"resources.cpus=1 is less than resources.tasks_per_node=2"),
        (pretrain, {"tasks_per_node": 2, "gpus": 2, "cpus": 8, "streams_per_gpu": 2},
         r"resources.streams_per_gpu=2 with 2 ranks"),
        (pretrain, {"tasks_per_node": 0}, r"both must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            check_ranks(family, res)


def test_launcher_stops_before_writing_when_the_family_runs_one_process(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), "experiment=egotoy_main", "cluster=local_slurm",
                          "dry=1", "resources.tasks_per_node=2", "resources.cpus=2"], cwd=tmp_path,
                         capture_output=True, text=True, env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "the continual family's job runs as one process" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.slurm
def test_dry_sbatch_asks_nodes_ranks_and_a_cpu_share_per_rank(tmp_path, slurm, data_overrides):
    _pretrain_project(tmp_path, "ddp_dry")
    out = _grid(tmp_path, slurm, "ddp_dry", [*PRETRAIN_TINY, *data_overrides[:2]], "dry=1",
                "resources.tasks_per_node=2", "resources.nodes=2", "resources.gpus=2", "resources.cpus=8")
    assert out.returncode == 0, out.stderr
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gres=gpu:2", "export OMP_NUM_THREADS=4", "export ACTLAB_CPUS_PER_STREAM=4"):
        assert line in out.stdout, (line, out.stdout)
    assert "srun" in out.stdout      # the ranks are the srun step's tasks


@pytest.mark.slurm
@pytest.mark.slow
def test_two_srun_ranks_train_one_pretraining_run_on_local_slurm(tmp_path, slurm, data_overrides):
    """A pretraining row as 2 ranks of one Slurm task (gloo on the CPU partition): both ranks train on
    half of every global batch, rank 0 alone writes the one run folder, and the run completes."""
    marker = tmp_path / "forwards.txt"
    _pretrain_project(tmp_path, "ddp_slurm")
    out = _grid(tmp_path, slurm, "ddp_slurm", [*PRETRAIN_TINY, *data_overrides[:2],
                                               "model._target_=test_launch_ranks.rank_x3d",
                                               f"+model.marker={json.dumps(str(marker))}"], *TWO_RANKS)
    assert out.returncode == 0, out.stderr
    sweep = _sweep(tmp_path, "ddp_slurm")
    assert [t.state for t in _wait_done(sweep, timeout=600)] == ["completed"]
    seen = forwards(marker)
    assert {r for r, _, _ in seen} == {0, 1} and {w for _, w, _ in seen} == {2}, seen
    _halves(seen)
    (run,) = [p.parent for p in (tmp_path / "results").rglob("summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert "val/action/top1" in summary


@pytest.mark.slow
def test_two_torchrun_ranks_in_the_local_executor(tmp_path, data_overrides):
    marker = tmp_path / "forwards.txt"
    _pretrain_project(tmp_path, "ddp_local")
    out = subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), "experiment=ddp_local", "cluster=local",
                          f"configs={tmp_path / 'configs'}", *TWO_RANKS,
                          f"task_overrides={hydra_list([*PRETRAIN_TINY, *data_overrides[:2], 'model._target_=test_launch_ranks.rank_x3d', '+model.marker=' + json.dumps(str(marker))])}",
                          f"pythonpath={hydra_list([str(Path(__file__).parent)])}"],
                         cwd=tmp_path, capture_output=True, text=True, env=os.environ | {"ACTLAB_ROOT": str(tmp_path)},
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    seen = forwards(marker)
    assert {r for r, _, _ in seen} == {0, 1} and {w for _, w, _ in seen} == {2}, seen
    _halves(seen)
    assert len(list((tmp_path / "results").rglob("summary.json"))) == 1

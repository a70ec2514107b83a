"""Shared by the supervised families' two-rank tests (tests/test_{ak,zstal,hand}_ddp.py): one toy
run of a family's experiment as 2 torchrun ranks in the local executor (gloo on the CPU), the way
`make grid` starts it (`jobs/grid.py ... cluster=local resources.tasks_per_node=2`), and a marker
of which ranks trained.

`mark(module, marker)` appends `<rank> <world> <batch>` to the marker file at each forward of
`module` in training mode, so a test sees that both processes trained and on how many samples of
each global batch (the tasks import the tests' factories: the sweep's `pythonpath` holds tests/).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from torch import nn

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TWO_RANKS = ["resources.tasks_per_node=2", "resources.cpus=2"]


def mark(module: nn.Module, marker: str | Path) -> nn.Module:
    from actlab.device import ranks_from_env

    ranks = ranks_from_env()

    def hook(mod, args):
        if mod.training:
            with open(marker, "a") as f:
                x = args[0]
                size = (x[0] if isinstance(x, (list, tuple)) else x).shape[0]   # a list: one tensor per pathway
                f.write(f"{ranks.rank} {ranks.world_size} {size}\n")

    module.register_forward_pre_hook(hook)
    return module


def forwards(marker: Path) -> list[tuple[int, int, int]]:
    return [tuple(map(int, line.split())) for line in marker.read_text().splitlines() if line]


def per_rank(marker: Path) -> dict[int, list[int]]:
    """Each rank's training forwards (their batch sizes), in order; the world size must be 2."""
    seen = forwards(marker)
    assert {w for _, w, _ in seen} == {2}, seen
    return {rank: [n for r, _, n in seen if r == rank] for rank in (0, 1)}


def run_two_ranks(tmp: Path, family: str, name: str, experiment: str, task_overrides: list[str],
                  timeout: int = 240) -> subprocess.CompletedProcess:
    """Write configs/<family>/experiment/<name>.yaml (`experiment`: its body) in a copy of the
    configs and run its pipeline with 2 ranks per task, results under `tmp`."""
    from test_launch_slurm import hydra_list    # here, not at the top: the tasks import this module for `mark`

    shutil.copytree(REPO / "configs", tmp / "configs")
    (tmp / "configs" / family / "experiment" / f"{name}.yaml").write_text(
        f"# @package _global_\nexperiment: {name}\n{experiment}")
    return subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), f"experiment={name}", "cluster=local",
                           f"configs={tmp / 'configs'}", *TWO_RANKS,
                           f"task_overrides={hydra_list(task_overrides)}",
                           f"pythonpath={hydra_list([str(TESTS)])}"],
                          cwd=tmp, capture_output=True, text=True, timeout=timeout,
                          env=os.environ | {"ACTLAB_ROOT": str(tmp), "WANDB_MODE": "disabled"})


def summaries(tmp: Path) -> list[Path]:
    return list((tmp / "results").rglob("summary.json"))


def marker_override(key: str, marker: Path) -> str:
    return f"+{key}={json.dumps(str(marker))}"

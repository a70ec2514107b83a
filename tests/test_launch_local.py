"""The `local` cluster (process pool) and grid validation: no Slurm needed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_local_pool_runs_every_row_with_array_variables(tmp_path):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "experiment" / "launch_local.yaml").write_text(
        "# @package _global_\nexperiment: launch_local\nusers: ['7', '8']\nseeds: [0, 1]\n"
        "grid:\n  method.lr: [0.1, \"x; $(echo hi)\"]\ntransfer: none\n")
    out = subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), "experiment=launch_local", "cluster=local",
                          f"config_dir={tmp_path / 'configs'}", "job=actlab.launch.echo_job:run",
                          "resources.array_parallelism=2"], cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "8 of 8 tasks succeeded" in out.stdout
    (sweep,) = (tmp_path / "sweeps" / "launch_local").iterdir()
    rows = json.loads((sweep / "manifest.json").read_text())["rows"]
    for row in rows:
        echo = json.loads((Path(row["run_folder"]) / "echo.json").read_text())
        assert echo["env"]["SLURM_ARRAY_TASK_ID"] == str(row["index"])
        assert echo["overrides"] == row["overrides"] and echo["seed"] == row["seed"]
    assert len({r["identity"]["run_id"] for r in rows}) == 8

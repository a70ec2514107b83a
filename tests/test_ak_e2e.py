"""`make run EXP=aktoy_main` end to end, capped: the launcher's local pipeline generates a small
aktoy set (its preparation step), runs the four losses x clip_proj x 1 seed, aggregates and
prints the LaTeX table with the random-score column. (Capped to 300 training clips, the tiny model
stays at chance; the >= 2x-random acceptance is measured on the full set: docs/ak.md.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO


@pytest.mark.slow
def test_make_run_aktoy_main_capped(tmp_path):
    env = os.environ | {"ACTLAB_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "jobs/run.py", "experiment=aktoy_main", "cluster=local", "--",
                           "data.scale=0.25", "epochs=20", "seeds=[0]"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "data" / "aktoy" / ".generated").exists()           # the preparation step ran
    table = re.search(r"LaTeX table: (\S+)", proc.stdout)
    assert table and "Baseline (BCE) / clip\\_proj" in proc.stdout
    tidy = pd.read_csv(os.path.join(os.path.dirname(table.group(1)), "aggregate.csv"))
    mean = tidy[tidy.stat == "mean"].pivot(index="label", columns="metric", values="value")
    assert len(mean) == 4
    assert mean["test/map_random"].nunique() == 1 and (mean["test/map"] > 0).all()    # one test split, scored
    assert (tmp_path / "sweeps").exists() and "/table_paper.tex" in proc.stdout

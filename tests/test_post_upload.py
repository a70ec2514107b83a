"""The optional W&B upload of an aggregate, read back from the real offline record log."""
from __future__ import annotations

import pandas as pd

from actlab.post.upload import upload_aggregate
from actlab.post.wandb_offline import read_offline_runs


def test_upload_writes_an_offline_run_with_every_mean_and_se(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tidy = pd.DataFrame({"group": ["g1", "g1", "g1"], "metric": ["oag/action/balanced_top1"] * 3,
                         "stat": ["mean", "se", "n"], "value": [0.125, 0.05, 3.0]})
    csv = tmp_path / "aggregate.csv"
    tidy.to_csv(csv, index=False)
    run_id = upload_aggregate(csv, "exp", tmp_path / "wandb")
    runs = read_offline_runs(tmp_path / "wandb")
    assert set(runs) == {run_id}
    run = runs[run_id]
    assert run.group == "exp-aggregate" and run.exit_code == 0
    assert run.summary["g1/oag/action/balanced_top1/mean"] == 0.125
    assert run.summary["g1/oag/action/balanced_top1/se"] == 0.05
    assert "g1/oag/action/balanced_top1/n" not in run.summary
    assert upload_aggregate(csv, "exp", tmp_path / "wandb") == run_id      # same table, same run

"""The `local` cluster (process pool) and grid validation: no Slurm needed, real stream jobs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from actlab.families.continual import FAMILY
from actlab.launch.grid import build_grid, parse_task_overrides
from actlab.results.store import iter_runs


CONTINUAL_CONFIGS = REPO / "configs" / "continual"


def stream_task_overrides(data_cfg, egotoy_splits, pretrained, max_clips: int = 8) -> list[str]:
    """The sweep-wide overrides that point real stream tasks at the session's tiny egotoy set."""
    return [f"data.max_clips={max_clips}", f"paths.data={json.dumps(str(data_cfg.root))}",
            f"paths.splits={json.dumps(str(egotoy_splits))}", f"paths.pretrained={json.dumps(str(pretrained))}",
            "wandb.mode=disabled"]


def hydra_list(items: list[str]) -> str:
    """A Hydra command-line list of strings: every item quoted, so `=` and `/` stay inside."""
    return "[" + ",".join(json.dumps(i) for i in items) + "]"


@pytest.mark.slow
def test_local_pool_runs_real_stream_tasks_with_array_variables(tmp_path, data_cfg, egotoy_splits, pretrained):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "continual" / "experiment" / "launch_local.yaml").write_text(
        "# @package _global_\nexperiment: launch_local\nusers: ['68', '265']\nseeds: [0]\n"
        "defaults:\n  - override /method: finetune\n"
        "grid:\n  method.name: [plain, \"x y; $(echo hi) `id` 'q'\"]\ntransfer: none\nreference: null\n")
    overrides = stream_task_overrides(data_cfg, egotoy_splits, pretrained)
    out = subprocess.run([sys.executable, str(REPO / "jobs/grid.py"), "experiment=launch_local", "cluster=local",
                          f"configs={tmp_path / 'configs'}", "resources.array_parallelism=2",
                          f"task_overrides={hydra_list(overrides)}"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "4 of 4 tasks succeeded" in out.stdout, out.stdout
    assert out.stdout.count(": started") == 4 and out.stdout.count(": completed in") == 4   # progress lines
    (sweep,) = (tmp_path / "sweeps" / "launch_local").iterdir()
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["task_overrides"]["data.max_clips"] == 8
    assert manifest["task_overrides"]["paths.data"] == str(data_cfg.root)
    runs = {str(r.folder): r for r in iter_runs(tmp_path / "results", "launch_local")}
    assert sorted(runs) == sorted(row["run_folder"] for row in manifest["rows"])
    for row in manifest["rows"]:
        run = runs[row["run_folder"]]
        assert run.identity.to_dict() == row["identity"]
        assert run.summary["online/action/n_samples"] == 8      # data.max_clips reached the task
        log = next((sweep / "logs").glob(f"*_{row['index']}.out")).read_text()
        assert f"code {sweep / 'code' / 'src' / 'actlab'}" in log     # the code snapshot ran
        import yaml
        cfg = yaml.safe_load((Path(row["run_folder"]) / "config.yaml").read_text())
        assert cfg["method"]["name"] == row["overrides"]["method.name"]   # hostile value unchanged


def test_task_overrides_are_parsed_and_validated_like_grid_values(data_cfg, egotoy_splits, pretrained):
    parsed = parse_task_overrides(["data.max_clips=8", "paths.data=/a b/c", "+method.extra='x;y'"])
    assert parsed == {"data.max_clips": 8, "paths.data": "/a b/c", "+method.extra": "x;y"}
    with pytest.raises(ValueError, match="cannot parse 'nokey'"):
        parse_task_overrides(["nokey"])
    with pytest.raises(ValueError, match="given twice"):
        parse_task_overrides(["data.max_clips=8", "data.max_clips=9"])
    with pytest.raises(ValueError, match="sweep"):
        parse_task_overrides(["data.max_clips=1,2"])
    good = parse_task_overrides(stream_task_overrides(data_cfg, egotoy_splits, pretrained))
    grid = build_grid(CONTINUAL_CONFIGS, "egotoy_sgd", FAMILY, REPO, task_overrides=good)
    # 12 SGD points + the frozen reference the experiment lacks, x 3 train users
    assert len(grid.points) == 13 * 3 and grid.points[0].overrides == {"method": "frozen"}
    with pytest.raises(ValueError, match="data.no_such_key"):
        build_grid(CONTINUAL_CONFIGS, "egotoy_sgd", FAMILY, REPO, task_overrides=good | {"data.no_such_key": 1})
    with pytest.raises(ValueError, match="grid sweeps"):
        build_grid(CONTINUAL_CONFIGS, "egotoy_sgd", FAMILY, REPO, task_overrides=good | {"method.lr": 0.5})
    for key in ("user", "seed", "group", "submitted"):   # identity keys: set by the launcher only
        with pytest.raises(ValueError, match=f"`{key}` is an identity key"):
            build_grid(CONTINUAL_CONFIGS, "egotoy_sgd", FAMILY, REPO, task_overrides=good | {key: "1"})


def test_pipeline_plan_pretrains_first_and_runs_the_snapshot_scripts(tmp_path, data_cfg, egotoy_splits, pretrained,
                                                                     monkeypatch):
    from actlab.launch.pipeline import plan
    from actlab.launch.submit import prepare

    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "continual" / "experiment" / "launch_pre.yaml").write_text(
        "# @package _global_\nexperiment: launch_pre\nusers: ['68']\nseeds: [0]\n"
        "grid:\n  method: [finetune]\ntransfer: diagonal\npretrain: true\n")
    overrides = stream_task_overrides(data_cfg, egotoy_splits, pretrained)
    sweep, manifest = prepare("launch_pre", {"executor": "local"}, {"cpus": 1, "array_parallelism": 1},
                              configs=tmp_path / "configs", sweeps_root=tmp_path / "sweeps",
                              task_overrides=overrides)
    # the frozen reference joins the grid: it has none
    assert [r.overrides for r in manifest.rows] == [{"method": "frozen"}, {"method": "finetune"}]
    pipe = plan(sweep, manifest, "python", overrides)
    code = sweep / "code"
    paths_args = [o for o in overrides if o.startswith("paths.")]
    (pretrain, transfer) = pipe.steps
    assert (pretrain.name, pretrain.before, transfer.name, transfer.before) == ("pretrain", True, "transfer", False)
    assert pretrain.argv[:3] == ["python", "-u", str(code / "jobs" / "pretrain.py")]
    assert pretrain.argv[3:-1] == paths_args and pretrain.argv[-1].startswith("paths.root=")
    assert transfer.argv[2:4] == [str(code / "jobs" / "transfer.py"), "experiment=launch_pre"]
    assert pipe.aggregate.argv[2:] == [str(code / "postprocess" / "to_latex.py"), "--sweep", str(sweep),
                                       "--out", str(sweep / "report")]
    assert json.loads((sweep / "sweep.json").read_text()) == {
        "experiment": "launch_pre", "family": "continual", "results": str(tmp_path / "results"), "units": ["68"],
        "reference_group": manifest.reference_group,
        "groups": sorted([manifest.rows[0].identity["group"], manifest.rows[1].identity["group"]])}  # frozen, finetune
    assert manifest.reference_group == manifest.rows[0].identity["group"]
    # the decode-cache step decodes what the tasks read: it also gets their data.* overrides
    cached = [*stream_task_overrides(data_cfg, egotoy_splits, pretrained, max_clips=7), "data.cache_prepare=true"]
    sweep2, manifest2 = prepare("launch_pre", {"executor": "local"}, {"cpus": 1, "array_parallelism": 1},
                                configs=tmp_path / "configs", sweeps_root=tmp_path / "sweeps2", task_overrides=cached)
    steps = {s.name: s for s in plan(sweep2, manifest2, "python", cached).steps}
    assert list(steps) == ["pretrain", "decode_cache", "transfer"]
    assert "data.max_clips=7" in steps["decode_cache"].argv and "data.cache_prepare=true" in steps["decode_cache"].argv
    assert "wandb.mode=disabled" not in steps["decode_cache"].argv        # other keys stay with the tasks
    assert not any(a.startswith("data.") for a in steps["pretrain"].argv + steps["transfer"].argv)


@pytest.mark.slow
def test_make_run_local_runs_every_step_in_order(tmp_path, data_cfg, egotoy_splits, pretrained):
    """`make run` (cluster=local): streams, transfer matrix and report, blocking, on a tiny setting."""
    overrides = stream_task_overrides(data_cfg, egotoy_splits, pretrained) + ["users=['68','265']"]
    out = subprocess.run([sys.executable, str(REPO / "jobs/run.py"), "cluster=local",
                          f"task_overrides={hydra_list(overrides)}", "resources.array_parallelism=2"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (sweep,) = (tmp_path / "sweeps" / "egotoy_main").iterdir()
    assert "total: completed 8" in out.stdout and "\\begin{tabular}" in out.stdout
    assert f"LaTeX table: {sweep / 'report' / 'table.tex'}" in out.stdout
    steps = [line.split(":")[1].strip() for line in out.stdout.splitlines() if line.startswith("actlab pipeline:")]
    assert steps == ["transfer", "aggregate"]
    for run in iter_runs(tmp_path / "results", "egotoy_main"):
        if run.labels["variant"] != "label_window":    # transfer: all -> both users' streams
            assert sorted(p.stem for p in (run.folder / "transfer").glob("*.json")) == ["265", "68"]


@pytest.mark.slow
def test_make_run_pretrain_grid_local_gives_mean_and_se_over_seeds(tmp_path, data_cfg, egotoy_splits):
    """The second job kind through the same launcher on the local executor: 2 lr x 2 seeds, no units."""
    import pandas as pd

    out = subprocess.run([sys.executable, str(REPO / "jobs/run.py"), "experiment=egotoy_pretrain_lr", "cluster=local",
                          "resources.array_parallelism=2", "--", "epochs=1", "data.max_clips=4", "num_workers=0",
                          "wandb.mode=disabled", f"paths.data={data_cfg.root}", f"paths.splits={egotoy_splits}"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (sweep,) = (tmp_path / "sweeps" / "egotoy_pretrain_lr").iterdir()
    tidy = pd.read_csv(sweep / "report" / "aggregate.csv")
    acc = tidy[tidy.metric == "val/action/top1"].pivot(index="group", columns="stat", values="value")
    assert sorted(acc["n"]) == [2.0, 2.0]
    # mean and SE over the two seeds of each group, from the runs' own summaries
    runs = list(iter_runs(tmp_path / "results", "egotoy_pretrain_lr"))
    assert len(runs) == 4 and {r.identity.unit for r in runs} == {None}
    for group, row in acc.iterrows():
        vals = [r.summary["val/action/top1"] for r in runs if r.identity.group == group]
        assert row["mean"] == pytest.approx(sum(vals) / 2)
        assert row["se"] == pytest.approx(abs(vals[0] - vals[1]) / 2)   # sd(ddof=1)/sqrt(2) of two values
    assert (sweep / "report" / "plots" / "val_action_top1.png").exists()
    assert "\\begin{tabular}" in out.stdout and "lr=0.005" in out.stdout


def test_local_pool_runs_no_more_cpu_tasks_than_cpus_and_streams_per_gpu_on_gpus():
    from actlab.launch.local import pool_width

    base = {"array_parallelism": 8, "cpus": 1}
    assert pool_width(base, n_gpus=0, n_cpus=2) == 2                 # 8 asked, 2 cores
    assert pool_width(base | {"cpus": 4}, n_gpus=0, n_cpus=16) == 4  # each task holds 4 CPUs
    assert pool_width(base | {"cpus": 4}, n_gpus=0, n_cpus=2) == 1   # never below one
    assert pool_width(base | {"tasks_per_node": 2}, n_gpus=0, n_cpus=4) == 2   # ranks hold CPUs too
    assert pool_width(base | {"array_parallelism": 3}, n_gpus=0, n_cpus=64) == 3
    assert pool_width(base | {"streams_per_gpu": 2, "gpus": 1}, n_gpus=2, n_cpus=2) == 4   # GPUs decide

"""The pre-submit input check (`make grid` stops, naming the config key and the path, before a sweep
folder exists) and `DRY=1` on a machine without a reachable Slurm.

The Ego4D inputs are a generated minimal tree in the real formats (tests/ego4d_tree.py): ego4d.json,
LTA annotation files, split files written by the project's split code, and a Lightning checkpoint in
SlowFast-library naming with 115 / 478 head rows.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose
from ego4d_tree import write_lightning_checkpoint, write_tree

from actlab.errors import DataError
from actlab.families import get as get_family
from actlab.families.continual.inputs import checkpoint_heads
from actlab.family import Family
from actlab.launch.cli import launch_config
from actlab.launch.pipeline import run_pipeline
from actlab.launch.preflight import InputsError
from actlab.launch.submit import max_array_size, prepare

CONFIGS = REPO / "configs"
EGO4D_EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "continual" / "experiment").glob("ego4d_*.yaml"))
SLURM_TOOLS = {"scontrol", "sbatch", "squeue", "sacct", "srun", "salloc", "scancel", "sinfo", "sstat"}
# What an installed Slurm without a slurm.conf prints (Debian's slurm-client, no DNS SRV record).
UNCONFIGURED_SCONTROL = """#!/bin/sh
echo "scontrol: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host" >&2
echo "scontrol: error: fetch_config: DNS SRV lookup failed" >&2
echo "scontrol: error: _establish_config_source: failed to fetch config" >&2
echo "scontrol: fatal: Could not establish a configuration source" >&2
exit 1
"""
BLUECRYSTAL = yaml.safe_load((CONFIGS / "cluster" / "bluecrystal.yaml").read_text())


def path_without_slurm(tmp: Path) -> str:
    """A PATH of one folder linking every program of today's PATH except Slurm's."""
    shim = tmp / "bin-no-slurm"
    shim.mkdir(exist_ok=True)
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir():
            continue
        for prog in Path(folder).iterdir():
            if prog.name not in SLURM_TOOLS and not (shim / prog.name).exists() and os.access(prog, os.X_OK):
                (shim / prog.name).symlink_to(prog)
    return str(shim)


def path_with_unconfigured_scontrol(tmp: Path) -> str:
    fake = tmp / "bin-fake-slurm"
    fake.mkdir(exist_ok=True)
    (fake / "scontrol").write_text(UNCONFIGURED_SCONTROL)
    (fake / "scontrol").chmod(0o755)
    return f"{fake}{os.pathsep}{path_without_slurm(tmp)}"


@pytest.fixture
def ego4d(tmp_path, monkeypatch) -> dict[str, Path]:
    """The minimal tree, the bluecrystal profile's variables pointing at it, and no Slurm on PATH."""
    env = write_tree(tmp_path / "tree")
    for var, value in env.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("PATH", path_without_slurm(tmp_path))
    return env


def _prepare_bluecrystal(experiment: str, sweeps: Path, task_overrides: list[str] | None = None):
    """A real (not dry) submission's preparation with the bluecrystal profile: nothing is submitted
    before prepare() returns, so a failing check must leave `sweeps` untouched."""
    return prepare(experiment, dict(BLUECRYSTAL), {"cpus": 1, "array_parallelism": 1}, sweeps_root=sweeps,
                   task_overrides=task_overrides)


# -- the paths profile -----------------------------------------------------------------------
def test_every_paths_profile_key_is_documented_and_bluecrystal_sets_every_key_a_job_reads():
    for profile in sorted((CONFIGS / "paths").glob("*.yaml")):
        for line in profile.read_text().splitlines():
            if re.match(r"^\w+:", line):
                assert "#" in line, f"{profile.name}: `{line.split(':')[0]}` has no comment"
    default = yaml.safe_load((CONFIGS / "paths" / "default.yaml").read_text())
    bluecrystal = yaml.safe_load((CONFIGS / "paths" / "bluecrystal.yaml").read_text())
    assert set(default) <= set(bluecrystal)
    assert BLUECRYSTAL["paths"] == "bluecrystal"


def test_bluecrystal_profile_assumes_slurms_default_max_array_size_for_dry_runs():
    # Slurm's documented default MaxArraySize is 1001; BlueCrystal 4's own value is not published
    assert BLUECRYSTAL["dry_max_array_size"] == 1001
    assert BLUECRYSTAL["max_array_size"] is None        # a real submission asks the cluster


# -- reading a checkpoint's heads ------------------------------------------------------------
def test_checkpoint_heads_in_slowfast_library_and_actlab_naming(tmp_path):
    import torch
    from torch import nn

    from actlab.families.continual.models.weights import save_checkpoint

    # Lightning, SlowFast naming: projections.0 has 115 rows (verbs), projections.1 478 (nouns)
    heads = checkpoint_heads(write_lightning_checkpoint(tmp_path / "sf.ckpt", 115, 478))
    assert (heads.verbs, heads.nouns) == (115, 478)
    # the project's own layout ({"model": state_dict, "meta"}): verb_head 8 x 4, noun_head 16 x 4
    model = nn.Module()
    model.backbone, model.verb_head, model.noun_head = nn.Linear(2, 4), nn.Linear(4, 8), nn.Linear(4, 16)
    heads = checkpoint_heads(save_checkpoint(model, tmp_path / "own.pt", {}))
    assert (heads.verbs, heads.nouns) == (8, 16)
    # upstream's head once wrapped by its unseen-class masker: `head.0.projections.<n>`, 5 and 7 rows
    torch.save({"state_dict": {"model.head.0.projections.0.weight": torch.zeros(5, 2),
                               "model.head.0.projections.1.weight": torch.zeros(7, 2)}}, tmp_path / "masked.ckpt")
    heads = checkpoint_heads(tmp_path / "masked.ckpt")
    assert (heads.verbs, heads.nouns) == (5, 7)
    # the SlowFast library's own layout ({"model_state": ..., "epoch"}), 3 and 4 rows
    torch.save({"model_state": {"head.projections.0.weight": torch.zeros(3, 2),
                                "head.projections.1.weight": torch.zeros(4, 2)}, "epoch": 1}, tmp_path / "sf.pyth")
    heads = checkpoint_heads(tmp_path / "sf.pyth")
    assert (heads.verbs, heads.nouns) == (3, 4)
    torch.save({"state_dict": {"model.s1.pathway0_stem.conv.weight": torch.zeros(1)}}, tmp_path / "headless.ckpt")
    with pytest.raises(DataError, match="no verb head"):
        checkpoint_heads(tmp_path / "headless.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read"):
        checkpoint_heads(tmp_path / "garbage.ckpt")


# -- the family checks -------------------------------------------------------------------------
def test_egotoy_inputs_pass_for_both_families_and_the_contract_default_is_no_check(data_cfg, egotoy_splits,
                                                                                   pretrained):
    paths = [f"paths.data={data_cfg.root}", f"paths.splits={egotoy_splits}", f"paths.pretrained={pretrained}"]
    stream = compose("stream", ["experiment=egotoy_main", *paths])
    assert get_family("continual").check_inputs(stream) == []
    pretrain = compose("pretrain", ["experiment=egotoy_pretrain_lr", *paths])
    assert get_family("pretrain").check_inputs(pretrain) == []
    bare = Family(name="x", config_dir="x", config_name="x", job="m:f", unit=None, units=None,
                  aggregate=lambda *a: None, table=lambda: None)
    assert bare.check_inputs(stream) == []


def _tree_paths(tree: dict[str, Path]) -> list[str]:
    return [f"paths.data={tree['ACTLAB_EGO4D']}", f"paths.splits={tree['ACTLAB_SCRATCH']}/splits",
            f"paths.pretrained={tree['ACTLAB_EGO4D_CHECKPOINT']}"]


def test_pretrain_family_names_a_missing_pretrain_split(tmp_path):
    tree = write_tree(tmp_path)
    (tree["ACTLAB_SCRATCH"] / "splits" / "pretrain.json").unlink()
    cfg = compose("pretrain", ["experiment=egotoy_pretrain_lr", "data=ego4d", "model=slowfast_r101_ego4d",
                               *_tree_paths(tree)])
    (problem,) = get_family("pretrain").check_inputs(cfg)
    assert problem == (f"data.splits_dir = {tree['ACTLAB_SCRATCH']}/splits: no pretrain.json; "
                       f"`python jobs/split.py data=ego4d` writes it (set TASK=\"paths.splits=...\")")


def test_a_continual_experiment_that_pretrains_first_needs_no_checkpoint_yet(tmp_path):
    tree = write_tree(tmp_path)
    tree["ACTLAB_EGO4D_CHECKPOINT"].unlink()
    cfg = compose("stream", ["experiment=ego4d_replay", *_tree_paths(tree)])
    assert get_family("continual").check_inputs(cfg) == [
        f"paths.pretrained = {tree['ACTLAB_EGO4D_CHECKPOINT']}: no such file (set TASK=\"paths.pretrained=...\")"]
    cfg.pretrain = True      # the pipeline's pretraining step writes it before the streams start
    assert get_family("continual").check_inputs(cfg) == []


# -- the launcher stops before writing anything --------------------------------------------------
MISSING = {   # what is removed -> the key the message names and the path it shows
    "metadata": ("data.metadata", lambda e: e["ACTLAB_EGO4D"] / ".." / "ego4d.json"),
    "annotations": ("data.annotations_dir", lambda e: e["ACTLAB_EGO4D"] / "annotations" / "fho_lta_val.json"),
    "clips": ("data.clips_dir", lambda e: e["ACTLAB_EGO4D"] / "clips"),
    "train split": ("data.splits_dir", lambda e: e["ACTLAB_SCRATCH"] / "splits" / "train.json"),
    "pretrain split": ("data.splits_dir", lambda e: e["ACTLAB_SCRATCH"] / "splits" / "pretrain.json"),
    "checkpoint": ("paths.pretrained", lambda e: e["ACTLAB_EGO4D_CHECKPOINT"]),
}


@pytest.mark.parametrize("what", list(MISSING))
def test_a_missing_input_stops_naming_key_and_path_and_writes_no_sweep(what, ego4d, tmp_path):
    key, path_of = MISSING[what]
    path = path_of(ego4d)
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    sweeps = tmp_path / "sweeps"
    with pytest.raises(InputsError) as err:
        _prepare_bluecrystal("ego4d_replay", sweeps)
    (problem,) = err.value.problems
    shown = str(path.parent) if key in ("data.splits_dir", "data.annotations_dir") else str(path)
    assert problem.startswith(f"{key} = {shown}"), problem
    assert "no such" in problem or f"no {path.name}" in problem
    assert problem in str(err.value) and "ego4d_replay" in str(err.value)
    assert not sweeps.exists()
    if what == "checkpoint":   # the variable the profile reads, and the override that replaces it
        assert problem == (f"paths.pretrained = {path}: no such file "
                           f"(set ACTLAB_EGO4D_CHECKPOINT or TASK=\"paths.pretrained=...\")")
    if what == "metadata":     # data.metadata = ${.root}/../ego4d.json, root = paths.data = paths.ego4d
        assert "(set ACTLAB_EGO4D or TASK=\"paths.ego4d=...\")" in problem


def test_an_unset_variable_names_the_variable_and_key_without_omegaconf_noise(ego4d, tmp_path, monkeypatch):
    monkeypatch.delenv("ACTLAB_SCRATCH")
    with pytest.raises(InputsError) as err:
        _prepare_bluecrystal("ego4d_replay", tmp_path / "sweeps")
    assert err.value.problems == ["paths.scratch: environment variable ACTLAB_SCRATCH is not set "
                                  "(set it, or TASK=\"paths.scratch=...\")"]
    assert "full_key" not in str(err.value) and not (tmp_path / "sweeps").exists()
    # a task override replaces the key, so the variable is no longer needed
    sweep, manifest = _prepare_bluecrystal("ego4d_replay", tmp_path / "sweeps",
                                           [f"paths.scratch={ego4d['ACTLAB_SCRATCH']}"])
    assert sweep.is_relative_to(tmp_path / "sweeps") and manifest.rows


def test_a_data_set_variable_left_unset_falls_back_under_scratch_and_names_the_variable(ego4d, tmp_path,
                                                                                          monkeypatch):
    """Only ACTLAB_SCRATCH is required of every family; a data set's variable defaults to a place
    under scratch, and a file missing there is named with the variable that moves it."""
    monkeypatch.delenv("ACTLAB_EGO4D_CHECKPOINT")
    with pytest.raises(InputsError) as err:
        _prepare_bluecrystal("ego4d_replay", tmp_path / "sweeps")
    default = Path(ego4d["ACTLAB_SCRATCH"]) / "checkpoints" / "ego4d_slowfast_r101.pt"
    assert err.value.problems == [f"paths.pretrained = {default}: no such file "
                                  f"(set ACTLAB_EGO4D_CHECKPOINT or TASK=\"paths.pretrained=...\")"]
    assert not (tmp_path / "sweeps").exists()


def test_an_unset_variable_of_the_cluster_profile_names_it(monkeypatch):
    monkeypatch.delenv("ACTLAB_TEST_NEVER_SET", raising=False)
    with pytest.raises(ValueError) as err:
        launch_config(["experiment=ego4d_replay", "cluster=bluecrystal",
                       "cluster.account=${oc.env:ACTLAB_TEST_NEVER_SET}"])
    assert str(err.value) == ("cluster.account: environment variable ACTLAB_TEST_NEVER_SET is not set "
                              "(set it, or ARGS=\"cluster.account=...\")")


@pytest.mark.parametrize("arg", ["cluster.nokey=1", "resources.cpus=[", "cluster=nope"])
def test_a_bad_launch_override_is_a_user_error_naming_it(arg):
    with pytest.raises(ValueError) as err:     # jobs/grid.py prints ValueErrors as one message, exit 2
        launch_config(["experiment=ego4d_replay", arg])
    assert arg.split("=")[0 if "." in arg else 1].rstrip("[") in str(err.value)


def test_checkpoint_heads_that_do_not_match_the_label_spaces_name_the_keys(ego4d, tmp_path):
    write_lightning_checkpoint(ego4d["ACTLAB_EGO4D_CHECKPOINT"], 8, 16)
    with pytest.raises(InputsError) as err:
        _prepare_bluecrystal("ego4d_replay", tmp_path / "sweeps")
    ckpt = ego4d["ACTLAB_EGO4D_CHECKPOINT"]
    assert err.value.problems == [
        f"paths.pretrained = {ckpt}: verb head has 8 classes, data.num_verbs = 115",
        f"paths.pretrained = {ckpt}: noun head has 16 classes, data.num_nouns = 478"]
    assert not (tmp_path / "sweeps").exists()


# -- MaxArraySize without a reachable Slurm -----------------------------------------------------
def test_max_array_size_when_the_cluster_cannot_be_asked(tmp_path, monkeypatch, capsys):
    for path in (path_without_slurm(tmp_path), path_with_unconfigured_scontrol(tmp_path)):
        monkeypatch.setenv("PATH", path)
        assert max_array_size({"max_array_size": None, "dry_max_array_size": 1001}, dry=True) == 1001
        out = capsys.readouterr().out
        assert "cannot ask the cluster for MaxArraySize" in out
        assert "cluster.dry_max_array_size = 1001 from the cluster profile" in out
        with pytest.raises(RuntimeError, match="cluster.max_array_size"):    # a real submission needs it
            max_array_size({"max_array_size": None, "dry_max_array_size": 1001}, dry=False)
        with pytest.raises(RuntimeError, match="cluster.dry_max_array_size"):
            max_array_size({"max_array_size": None, "dry_max_array_size": None}, dry=True)
        assert max_array_size({"max_array_size": 7}, dry=False) == 7         # set: never asked
    assert "Could not establish a configuration source" in out              # why, from scontrol


@pytest.mark.slow     # the grid of each experiment is composed and validated: seconds to a minute each
@pytest.mark.parametrize("experiment", EGO4D_EXPERIMENTS)
def test_every_ego4d_experiment_dry_runs_on_a_laptop(experiment, ego4d, capsys):
    pipe = run_pipeline(launch_config([f"experiment={experiment}", "cluster=bluecrystal", "dry=1"]))
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-" in out and "dry run, nothing submitted" in out, out
    assert "cluster.dry_max_array_size = 1001" in out and "step aggregate" in out
    assert not Path(pipe.sweep).exists()                                     # the dry sweep is gone
    assert not (ego4d["ACTLAB_SCRATCH"] / "sweeps").exists()


@pytest.mark.slow
def test_make_grid_dry_with_an_unconfigured_scontrol_then_a_missing_checkpoint(tmp_path):
    env = {k: str(v) for k, v in write_tree(tmp_path / "tree").items()}
    env = os.environ | env | {"ACTLAB_ROOT": str(tmp_path / "root"), "PATH": path_with_unconfigured_scontrol(tmp_path)}
    out = subprocess.run(["make", "grid", "EXP=ego4d_replay", "CLUSTER=bluecrystal", "DRY=1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "#SBATCH --array=0-" in out.stdout and "dry run, nothing submitted" in out.stdout
    assert "DNS SRV lookup failed" not in out.stderr and "Traceback" not in out.stderr
    Path(env["ACTLAB_EGO4D_CHECKPOINT"]).unlink()
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "grid.py"), "experiment=ego4d_replay",
                          "cluster=bluecrystal"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"paths.pretrained = {env['ACTLAB_EGO4D_CHECKPOINT']}: no such file" in out.stderr
    assert not (Path(env["ACTLAB_SCRATCH"]) / "sweeps").exists()

"""One frozen reference per stream setup (launch/reference.py): identified by what determines its
numbers, shared by every experiment and sweep with that setup, reused when completed, paired
against by the report of any sweep that names it."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time

import pandas as pd
import pytest
from conftest import REPO
from runs import continual_run
from test_launch_local import stream_task_overrides

from actlab.families.continual import FAMILY
from actlab.identity import RunIdentity
from actlab.launch.grid import build_grid, parse_task_overrides
from actlab.launch.reference import REFERENCE_EXPERIMENT, SHARED_SUBMITTED, cached_sha256
from actlab.launch.resubmit import rows_to_resubmit
from actlab.launch.status import sweep_status
from actlab.launch.submit import prepare
from actlab.post.report import select_experiment
from actlab.post.store_source import load_store
from actlab.results.lease import RunLease

LOCAL = {"executor": "local"}
RESOURCES = {"cpus": 1, "array_parallelism": 1}


@pytest.fixture
def tiny(tmp_path, data_cfg, egotoy_splits, pretrained, monkeypatch):
    """Task overrides of one user, 8 clips, the session's egotoy set; results under tmp_path."""
    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path))
    return stream_task_overrides(data_cfg, egotoy_splits, pretrained) + ["users=['68']"]


@pytest.fixture
def configs(tmp_path):
    """The shipped configs plus two one-point experiments (few composes: fast to validate)."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    for name, method in (("one_a", "finetune"), ("one_b", "label_window")):
        (tmp_path / "configs" / "continual" / "experiment" / f"{name}.yaml").write_text(
            f"# @package _global_\nexperiment: {name}\nusers: ['68']\nseeds: [0]\n"
            f"grid:\n  method: [{method}]\ntransfer: none\n")
    return tmp_path / "configs"


def grid_of(experiment: str, overrides: list[str], configs=REPO / "configs"):
    return build_grid(configs / "continual", experiment, FAMILY, REPO, task_overrides=parse_task_overrides(overrides))


# -- identity --------------------------------------------------------------------------------------
def test_two_experiments_share_one_reference_group(tiny, pretrained):
    sgd, replay = grid_of("egotoy_sgd", tiny), grid_of("egotoy_replay", tiny)
    assert sgd.reference_group == replay.reference_group
    assert sgd.reference_group.startswith("ref-") and "egotoy" not in sgd.reference_group
    # the first point is the frozen reference (the grids lack it); it belongs to no experiment of its own
    (ref,) = [p for p in sgd.points if p.overrides == {"method": "frozen"}]
    ident = ref.identity("egotoy_sgd", "20260101T000000Z", "abc", "continual")
    assert (ident.experiment, ident.group, ident.submitted) == (REFERENCE_EXPERIMENT, sgd.reference_group,
                                                                SHARED_SUBMITTED)
    # one folder per (group, user, seed), whoever submits it: no submit time in the run id
    assert ident.run_id == f"{sgd.reference_group}-u68-s0-shared"
    # what determined it, recorded: the checkpoint's bytes and the resolved stream config
    ref_id = sgd.reference_identity
    assert ref_id["files"] == {"paths.pretrained": hashlib.sha256(pretrained.read_bytes()).hexdigest()}
    config = ref_id["config"]
    assert config["data"]["max_clips"] == 8 and config["online_forward"] == "train"
    assert config["method"]["_target_"] == "actlab.families.continual.methods.frozen.Frozen"
    # launcher keys, locations, worker counts and identity keys do not determine it
    for key in ("users", "transfer", "pretrain", "seed", "seeds", "grid", "experiment", "paths", "wandb",
                "threads", "cache_clips", "reference", "reference_identity"):
        assert key not in config, key
    assert "num_workers" not in config["data"] and "cache_clips" not in config["data"]


def test_what_determines_the_reference_changes_its_group(tiny, tmp_path, pretrained, configs):
    base = grid_of("one_a", tiny, configs).reference_group
    assert grid_of("egotoy_sgd", tiny).reference_group == base      # the same setup, whatever the experiment
    # more clips: another stream
    assert grid_of("one_a", [o for o in tiny if not o.startswith("data.max_clips")] + ["data.max_clips=9"],
                   configs).reference_group != base
    # eval-mode online forward: other numbers
    assert grid_of("one_a", tiny + ["online_forward=eval"], configs).reference_group != base
    # the same checkpoint bytes elsewhere: the same reference; other bytes: another one
    copy = tmp_path / "copy.pt"
    shutil.copyfile(pretrained, copy)
    at = [o for o in tiny if not o.startswith("paths.pretrained")]
    assert grid_of("one_a", at + [f"paths.pretrained={json.dumps(str(copy))}"], configs).reference_group == base
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert grid_of("one_a", at + [f"paths.pretrained={json.dumps(str(copy))}"], configs).reference_group != base
    # loaders and seeds do not change the group; the seed is in each run's identity
    two = grid_of("one_b", tiny + ["data.num_workers=2", "seeds=[0,1]"], configs)
    assert two.reference_group == base
    refs = [p.identity("one_b", "t", "c", "continual").run_id for p in two.points
            if p.overrides == {"method": "frozen"}]
    assert refs == [f"{base}-u68-s0-shared", f"{base}-u68-s1-shared"]


def test_a_missing_checkpoint_is_named(tiny, tmp_path, configs):
    at = [o for o in tiny if not o.startswith("paths.pretrained")]
    with pytest.raises(ValueError, match=r"paths.pretrained.*no-such.pt"):
        grid_of("one_a", at + [f"paths.pretrained={json.dumps(str(tmp_path / 'no-such.pt'))}"], configs)


def test_a_sweep_that_makes_its_own_checkpoint_keeps_its_reference(tiny, configs):
    """`pretrain: true`: the checkpoint is written by the sweep, after submission; its bytes cannot
    identify the reference at submit time, so the reference stays the experiment's own (no reuse)."""
    grid = grid_of("one_a", tiny + ["pretrain=true"], configs)
    assert grid.reference_group.startswith("one_a-") and grid.reference_identity is None
    (ref,) = [p for p in grid.points if p.overrides == {"method": "frozen"}]
    assert ref.identity("one_a", "20260101T000000Z", "c", "continual").experiment == "one_a"


def test_checkpoint_hash_is_cached_by_path_size_and_mtime(tmp_path):
    f, cache = tmp_path / "w.pt", tmp_path / "results" / "cache.json"
    f.write_bytes(b"hello")
    # SHA-256("hello"), the well-known test vector
    hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert cached_sha256(f, cache) == hello
    entry = json.loads(cache.read_text())[str(f.resolve())]
    assert entry["size"] == 5 and entry["sha256"] == hello
    # the cached value is returned while path, size and mtime match: the file is not read again
    entry["sha256"] = "from-the-cache"
    cache.write_text(json.dumps({str(f.resolve()): entry}))
    assert cached_sha256(f, cache) == "from-the-cache"
    # other bytes of the same size, newer mtime: hashed again
    f.write_bytes(b"hellO")
    os.utime(f, ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    assert cached_sha256(f, cache) == hashlib.sha256(b"hellO").hexdigest()


# -- submit: reuse ---------------------------------------------------------------------------------
def test_second_experiment_reuses_the_completed_reference_runs(tiny, tmp_path, capsys):
    sweep1, m1 = prepare("egotoy_sgd", LOCAL, RESOURCES, sweeps_root=tmp_path / "sweeps", task_overrides=tiny)
    ref_row = m1.rows[0]
    assert ref_row.overrides == {"method": "frozen"} and not ref_row.reused
    assert m1.reference_group == ref_row.identity["group"] and m1.reference_identity["files"]
    # what identifies the shared group is kept beside its runs
    group_dir = tmp_path / "results" / REFERENCE_EXPERIMENT / m1.reference_group
    assert json.loads((group_dir / "reference.json").read_text()) == m1.reference_identity
    assert "reusing" not in capsys.readouterr().out
    continual_run(tmp_path / "results", RunIdentity.from_dict(ref_row.identity), "frozen",
                  {"online/action/balanced_top1": 0.25}, "sha68")

    sweep2, m2 = prepare("egotoy_replay", LOCAL, RESOURCES, sweeps_root=tmp_path / "sweeps", task_overrides=tiny)
    assert "reusing 1 completed reference runs" in capsys.readouterr().out
    assert m2.reference_group == m1.reference_group
    reused = [r for r in m2.rows if r.reused]
    assert [r.index for r in reused] == [0] and reused[0].run_folder == ref_row.run_folder
    assert reused[0].identity == ref_row.identity
    # status: the reused row is completed (never submitted by this sweep); resubmit leaves it alone
    table = sweep_status(sweep2)
    assert (table[0].state, table[0].job) == ("completed", "reused")
    assert {t.state for t in table[1:]} == {"missing"}
    assert rows_to_resubmit(sweep2) == [r.index for r in m2.rows[1:]]


def test_an_unfinished_reference_run_keeps_its_identity(tiny, tmp_path, capsys, configs):
    """A failed (or running) reference run of an earlier sweep is resubmitted in its own folder, with
    the identity it began with (its code version), so the job resumes it instead of refusing the folder."""
    _, m1 = prepare("one_a", LOCAL, RESOURCES, configs=configs, sweeps_root=tmp_path / "sweeps", task_overrides=tiny)
    old = RunIdentity.from_dict(m1.rows[0].identity | {"code": "old-code"})
    continual_run(tmp_path / "results", old, "frozen", {}, "sha68", state="failed")
    _, m2 = prepare("one_b", LOCAL, RESOURCES, configs=configs, sweeps_root=tmp_path / "sweeps", task_overrides=tiny)
    assert not m2.rows[0].reused and m2.rows[0].identity["code"] == "old-code"
    assert m2.rows[0].run_folder == m1.rows[0].run_folder
    assert "reusing" not in capsys.readouterr().out


def test_concurrent_sweeps_meet_at_the_lease_of_the_shared_folder(tiny, tmp_path, configs):
    """Two sweeps submitted the same reference run: the second task waits for the first one's lease,
    then finds the run completed and does nothing."""
    from actlab.families.continual.engine import stream_job
    from actlab.launch.task import task_config

    sweep, m = prepare("one_b", LOCAL, RESOURCES, configs=configs, sweeps_root=tmp_path / "sweeps",
                       task_overrides=tiny)
    row = m.rows[0]
    cfg = task_config(m, sweep, 0)
    cfg.lease_wait_s = 60
    folder = tmp_path / "results" / REFERENCE_EXPERIMENT / m.reference_group / row.identity["run_id"]
    assert str(folder) == row.run_folder
    held = threading.Event()

    def first_sweep_task() -> None:
        with RunLease(folder):
            held.set()
            time.sleep(1.0)
            continual_run(tmp_path / "results", RunIdentity.from_dict(row.identity), "frozen", {}, "sha68")

    other = threading.Thread(target=first_sweep_task)
    other.start()
    held.wait(10)
    t0 = time.monotonic()
    assert stream_job.run(cfg) == folder
    other.join()
    assert time.monotonic() - t0 >= 0.9     # it waited for the holder
    assert not (folder / "predictions.parquet").exists()   # and computed nothing


# -- post: pairing against a reference of another experiment ---------------------------------------
def test_report_keeps_only_the_reference_runs_of_its_own_users_and_seeds(tmp_path):
    root, ref = tmp_path / "results", "ref-0123abcd"
    for user, seed, bacc in (("68", 0, 0.25), ("265", 0, 0.75), ("68", 1, 0.75)):
        continual_run(root, RunIdentity(REFERENCE_EXPERIMENT, ref, user, seed, SHARED_SUBMITTED), "frozen",
                      {"online/action/balanced_top1": bacc}, f"sha{user}")
    continual_run(root, RunIdentity("b", "b-ft", "68", 0, "20260101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.5}, "sha68", reference_group=ref)
    runs = select_experiment(load_store(root), "b")
    # user 265 and seed 1 are another experiment's: not this report's reference
    assert sorted((r.group, r.unit, r.seed) for r in runs.rows) == [("b-ft", "68", 0), (ref, "68", 0)]

    from actlab.families.continual.aggregate import aggregate

    tidy = aggregate(runs).tidy
    oag = tidy[(tidy.group == "b-ft") & (tidy.metric == "oag/action/balanced_top1")].set_index("stat")["value"]
    assert oag["mean"] == pytest.approx(0.5 - 0.25) and oag["n"] == 1     # paired with user 68, seed 0 only
    ref_row = tidy[(tidy.group == ref) & (tidy.metric == "online/action/balanced_top1")].set_index("stat")["value"]
    assert ref_row["mean"] == pytest.approx(0.25) and ref_row["n"] == 1


@pytest.mark.slow
def test_second_sweep_runs_only_its_own_tasks_and_pairs_with_the_first_ones_reference(tmp_path, tiny, capsys,
                                                                                        configs):
    """Two real local sweeps of two experiments: the second submits no reference run and its report
    computes OAG against the first sweep's reference runs."""
    from actlab.launch.cli import launch_config
    from actlab.launch.manifest import load_jobs, load_manifest
    from actlab.launch.pipeline import run_pipeline

    def sweep_of(name: str):
        run_pipeline(launch_config([f"experiment={name}", "cluster=local", f"configs={configs}", "--", *tiny]))
        (sweep,) = (tmp_path / "sweeps" / name).iterdir()
        return sweep

    a = sweep_of("one_a")
    assert "reusing" not in capsys.readouterr().out
    b = sweep_of("one_b")
    out = capsys.readouterr().out
    assert "reusing 1 completed reference runs" in out and "1 of 1 tasks succeeded" in out
    ma, mb = load_manifest(a), load_manifest(b)
    assert ma.reference_group == mb.reference_group
    assert [r.reused for r in mb.rows] == [True, False]
    assert [e["rows"] for e in load_jobs(b)] == [[1]]          # only its own task ran
    assert [t.state for t in sweep_status(b)] == ["completed", "completed"]
    tidy = pd.read_csv(b / "report" / "aggregate.csv")
    oag = tidy[(tidy.metric == "oag/action/balanced_top1") & (tidy.stat == "n")]
    assert set(oag.reference) == {mb.reference_group} and set(oag.value) == {1.0}
    assert set(tidy.experiment) == {"one_b", REFERENCE_EXPERIMENT}

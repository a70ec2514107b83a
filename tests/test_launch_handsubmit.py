"""Submitting streams by hand on the project's local Slurm, without jobs/grid.py:

1. jobs/submit_stream.sh (manifest written with the shell's submit time, then one sbatch array of
   jobs/stream.sbatch), and a bare `sbatch --array=... jobs/stream.sbatch <manifest> <offset>`;
2. a Hydra multirun through hydra-submitit-launcher (configs/hydra/launcher/local_slurm.yaml),
   which must give the identities and run folders the launcher gives the same points.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import REPO
from test_launch_slurm import _project, data_overrides, hydra_list, slurm, slurm_diagnostics  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = ["data.max_clips=8", "wandb.mode=disabled"]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


def _wait_job(job_id: str, env: dict, n: int, timeout: float = 420) -> list[str]:
    """States of the array's n tasks once all are final (squeue empty, sacct final for each)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id], env=env, capture_output=True, text=True).stdout
        if not queued.strip():
            out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"], env=env,
                                 capture_output=True, text=True).stdout
            states = [line.split("|")[1].split()[0] for line in out.split("\n") if line.strip()]
            if len(states) == n and all(s in FINAL for s in states):
                return states
        time.sleep(2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s\n{slurm_diagnostics(env, job_id)}")


def _check_runs(tmp: Path, manifest: dict, rows: list[int]) -> None:
    from actlab.results.store import iter_runs

    runs = {str(r.folder): r for r in iter_runs(tmp / "results", manifest["experiment"])}
    assert sorted(runs) == sorted(manifest["rows"][i]["run_folder"] for i in rows)
    for i in rows:
        row = manifest["rows"][i]
        run = runs[row["run_folder"]]
        assert run.identity.to_dict() == row["identity"]
        assert run.summary["online/action/n_samples"] == 8


def test_submit_stream_sh_and_bare_sbatch(tmp_path, slurm, data_overrides):  # noqa: F811
    _project(tmp_path, "hand_t", "  method.lr: [0.1, 0.01]", "['68', '265']")
    env = os.environ | slurm | {"ACTLAB_ROOT": str(tmp_path), "ACTLAB_PYTHON": sys.executable}
    launch = [f"configs={tmp_path / 'configs'}", f"task_overrides={hydra_list([*TINY, *data_overrides])}",
              "resources.array_parallelism=2"]
    before = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = subprocess.run(["bash", str(REPO / "jobs/submit_stream.sh"), "hand_t", *launch, "--job-name=hand-t"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    after = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().split(";")[0]
    (sweep,) = (tmp_path / "sweeps" / "hand_t").iterdir()
    assert f"sweep: {sweep} (4 tasks)" in out.stderr
    manifest = json.loads((sweep / "manifest.json").read_text())
    # the timestamp is the shell's, fixed before the manifest was written, and every row carries it
    assert before <= manifest["submitted"] <= after
    assert {r["identity"]["submitted"] for r in manifest["rows"]} == {manifest["submitted"]}
    assert manifest["task_overrides"]["data.max_clips"] == 8      # forwarded to the tasks
    info = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
    assert "JobName=hand-t" in info, info   # sbatch options forwarded
    assert _wait_job(job_id, env, 4) == ["COMPLETED"] * 4
    _check_runs(tmp_path, manifest, [0, 1, 2, 3])
    assert len(list((sweep / "logs").glob(f"{job_id}_*.out"))) == 4

    # By hand without the wrapper: a fresh sweep from prepare, rows 2..3 through the offset argument
    prep = subprocess.run([sys.executable, "-m", "actlab.launch.prepare", "hand_t", *launch], cwd=tmp_path,
                          env=env | {"ACTLAB_SUBMITTED": "20260101T000000Z"}, capture_output=True, text=True,
                          timeout=300)
    assert prep.returncode == 0, prep.stderr
    sweep2 = Path(prep.stdout.strip())
    manifest2 = json.loads((sweep2 / "manifest.json").read_text())
    assert manifest2["submitted"] == "20260101T000000Z"
    out = subprocess.run(["sbatch", "--parsable", "--array=0-1", f"--output={sweep2}/logs/%A_%a.out",
                          str(REPO / "jobs/stream.sbatch"), str(sweep2 / "manifest.json"), "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _wait_job(out.stdout.strip(), env, 2) == ["COMPLETED"] * 2
    from actlab.results.store import iter_runs

    done = {str(r.folder) for r in iter_runs(tmp_path / "results", "hand_t")
            if r.identity.submitted == "20260101T000000Z"}
    assert done == {manifest2["rows"][i]["run_folder"] for i in (2, 3)}


def test_hydra_submitit_multirun_matches_launcher_identities(tmp_path, slurm, data_overrides,  # noqa: F811
                                                              monkeypatch):
    from actlab.identity import code_version
    from actlab.families.continual import FAMILY
    from actlab.launch.grid import build_grid, parse_task_overrides
    from actlab.results.store import iter_runs

    submitted = "20260102T030405Z"
    env = os.environ | slurm | {"ACTLAB_ROOT": str(tmp_path)}
    sweep_dir = tmp_path / "sweeps" / "hydra" / f"egotoy_main-{submitted}"
    cmd = [sys.executable, str(REPO / "jobs/stream.py"), "-m", "hydra/launcher=local_slurm",
           "experiment=egotoy_main", "user=68,265", "method=finetune,replay", f"submitted={submitted}",
           *TINY, *data_overrides, f"hydra.sweep.dir={sweep_dir}",
           # how much data, not which point: out of the group hash, as the launcher's task_overrides
           "hydra.job.config.override_dirname.exclude_keys=[data.max_clips]"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert len(list((sweep_dir / ".submitit").iterdir())) >= 1

    # the launcher's identities for the same points (what `make grid` would write in its manifest)
    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path))
    grid = build_grid(REPO / "configs" / "continual", "egotoy_main", FAMILY, REPO,
                      parse_task_overrides([*TINY, *data_overrides, "users=['68','265']"]))
    code = code_version(REPO)
    want = {}
    for p in grid.points:
        if p.overrides.get("method") in {"finetune", "replay"}:
            ident = p.identity("egotoy_main", submitted, code, "continual")
            want[str(ident.folder(tmp_path / "results"))] = ident.to_dict()
    assert len(want) == 4
    runs = {str(r.folder): r for r in iter_runs(tmp_path / "results", "egotoy_main")}
    assert sorted(runs) == sorted(want)
    for folder, ident in want.items():
        assert runs[folder].identity.to_dict() == ident
        assert runs[folder].summary["online/action/n_samples"] == 8

"""The launcher against the project's real local Slurm (cluster/local_slurm/start.sh), MaxArraySize 10.

The tasks run `actlab.launch.echo_job` (records what it received) so the whole submission path,
arrays, throttles, chunks, status and resubmit are exercised in seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, require

pytestmark = pytest.mark.slurm

STATE = Path(os.environ.get("ACTLAB_SLURM_TEST_DIR", "/var/tmp/actlab-slurm-test"))
SLURM_CONF = STATE / "etc" / "slurm.conf"
HOSTILE = "a b 'q' \"dq\" $(touch {p}/pwned1) `touch {p}/pwned2`; touch {p}/pwned3 ${{oops}}"


@pytest.fixture(scope="module")
def slurm():
    require(os.geteuid() == 0 and shutil.which("apt-get") is not None, "local Slurm needs root on Debian")
    env = os.environ | {"ACTLAB_SLURM_DIR": str(STATE), "ACTLAB_SLURM_MAX_ARRAY": "10",
                        "ACTLAB_SLURM_PORT": "7817", "ACTLAB_SLURM_CPUS": "4"}
    out = subprocess.run(["bash", str(REPO / "cluster/local_slurm/start.sh")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"export SLURM_CONF={SLURM_CONF}"
    again = subprocess.run(["bash", str(REPO / "cluster/local_slurm/start.sh")], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "started" not in again.stderr, again.stderr   # idempotent
    return {"SLURM_CONF": str(SLURM_CONF)}


def _project(tmp: Path, name: str, grid: str, users: str, extra: str = "") -> Path:
    shutil.copytree(REPO / "configs", tmp / "configs")
    (tmp / "configs" / "experiment" / f"{name}.yaml").write_text(
        f"# @package _global_\nexperiment: {name}\nusers: {users}\nseeds: [0]\ngrid:\n{grid}\n"
        f"transfer: none\necho_fail_unless: null\n{extra}")
    return tmp


def _grid(tmp: Path, slurm: dict, name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "jobs/grid.py"), f"experiment={name}", "cluster=local_slurm",
           f"cluster.env.SLURM_CONF={slurm['SLURM_CONF']}", f"config_dir={tmp / 'configs'}",
           "job=actlab.launch.echo_job:run", *args]
    return subprocess.run(cmd, cwd=tmp, env=os.environ | {"ACTLAB_ROOT": str(tmp)} | (env or {}),
                          capture_output=True, text=True, timeout=300)


def _sweep(tmp: Path, name: str) -> Path:
    (sweep,) = (tmp / "sweeps" / name).iterdir()
    return sweep


def _wait_done(sweep: Path, timeout: float = 240) -> list:
    from actlab.launch.status import sweep_status

    deadline = time.time() + timeout
    while time.time() < deadline:
        table = sweep_status(sweep)
        if all(t.state not in {"pending", "running", "requeued", "configuring", "completing"} for t in table):
            # sacct lags squeue: a task gone from squeue may not be final in sacct yet
            time.sleep(3)
            table = sweep_status(sweep)
            if all(t.state not in {"pending", "running", "requeued", "missing"} for t in table):
                return table
        time.sleep(2)
    raise AssertionError(f"sweep {sweep} did not finish: {[(t.row, t.state) for t in sweep_status(sweep)]}")


def test_array_chunked_throttled_hostile_values(tmp_path, slurm):
    hostile = HOSTILE.format(p=tmp_path)
    values = ", ".join(json.dumps(v) for v in [0.1, 0.01, 0.001, hostile])
    _project(tmp_path, "launch_t", f"  method.lr: [{values}]", "['1', '2', '3', '4', '5', '6']")
    out = _grid(tmp_path, slurm, "launch_t", "resources.array_parallelism=3",
                env={"WANDB_API_KEY": "sekret-key-4711"})
    assert out.returncode == 0, out.stderr
    # 24 tasks, MaxArraySize 10 -> arrays of 10, 10, 4, each throttled to 3
    assert out.stdout.count("submitted array") == 3, out.stdout
    assert "10 tasks (rows 0..9, %3)" in out.stdout and "4 tasks (rows 20..23, %3)" in out.stdout
    sweep = _sweep(tmp_path, "launch_t")
    table = _wait_done(sweep)
    assert [t.state for t in table] == ["completed"] * 24
    manifest = json.loads((sweep / "manifest.json").read_text())
    for row in manifest["rows"]:
        echo = json.loads((Path(row["run_folder"]) / "echo.json").read_text())
        assert echo["overrides"] == row["overrides"]             # the value reached the task unchanged
        assert echo["submitted"] == manifest["submitted"] == row["identity"]["submitted"]
        assert echo["group"] == row["identity"]["group"]
        assert echo["actlab_file"].startswith(str(sweep / "code" / "src"))   # the code snapshot ran
    assert sum(r["overrides"]["method.lr"] == hostile for r in manifest["rows"]) == 6
    assert not list(tmp_path.glob("pwned*")), "a grid value was executed"
    assert (sweep / "git.json").exists() and (sweep / "code" / "configs" / "stream.yaml").exists()
    for f in sweep.rglob("*"):
        if f.is_file() and f.suffix in {".json", ".diff", ".out", ".err", ".sh", ""}:
            assert "sekret-key-4711" not in f.read_text(errors="replace"), f


def test_dry_run_submits_nothing(tmp_path, slurm):
    _project(tmp_path, "launch_dry", "  method.lr: [0.1, 0.2]", "['1', '2']")
    before = subprocess.run(["squeue", "-h", "-o", "%i"], env=os.environ | slurm, capture_output=True,
                            text=True).stdout
    out = _grid(tmp_path, slurm, "launch_dry", "dry=1")
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --array=0-3%" in out.stdout and "dry run, nothing submitted: 4 tasks" in out.stdout
    assert "#SBATCH --signal=USR2@" in out.stdout and "wckey" not in out.stdout
    assert not (tmp_path / "sweeps").exists()
    after = subprocess.run(["sacct", "-n", "-X", "--name=actlab-launch_dry", "-o", "JobID"],
                           env=os.environ | slurm, capture_output=True, text=True).stdout
    assert after.strip() == "" and before is not None


def test_bad_grid_value_stops_everything(tmp_path, slurm):
    _project(tmp_path, "launch_bad", "  method: [finetune, no_such_method]", "['1']")
    out = _grid(tmp_path, slurm, "launch_bad")
    assert out.returncode == 2
    assert "grid point [method=no_such_method] user=1" in out.stderr and "no_such_method" in out.stderr
    assert not (tmp_path / "sweeps").exists()
    _project(tmp_path / "k", "launch_badkey", "  method.no_such_key: [1]", "['1']")
    out = _grid(tmp_path / "k", slurm, "launch_badkey")
    assert out.returncode == 2 and "method.no_such_key" in out.stderr


def test_status_shows_failure_and_resubmit_completes_it(tmp_path, slurm):
    flag = tmp_path / "let_user_2_pass"
    _project(tmp_path, "launch_fail", "  method.lr: [0.1, 0.2]", "['1', '2']",
             extra=f"echo_fail_users: ['2']\n")
    exp = tmp_path / "configs" / "experiment" / "launch_fail.yaml"
    exp.write_text(exp.read_text().replace("echo_fail_unless: null", f"echo_fail_unless: {json.dumps(str(flag))}"))
    out = _grid(tmp_path, slurm, "launch_fail")
    assert out.returncode == 0, out.stderr
    sweep = _sweep(tmp_path, "launch_fail")
    manifest_before = (sweep / "manifest.json").read_text()
    table = _wait_done(sweep)
    assert [(t.user, t.state) for t in table] == [("1", "completed"), ("2", "failed")] * 2
    failed = [t for t in table if t.state == "failed"]
    assert all(t.log and Path(t.log).exists() and "failing on purpose" in Path(t.log).read_text() for t in failed)
    status = subprocess.run([sys.executable, str(REPO / "jobs/status.py"), str(sweep)], capture_output=True,
                            text=True, env=os.environ | slurm, timeout=120)
    assert "failed" in status.stdout and failed[0].log in status.stdout, status.stdout + status.stderr
    done = {t.row: (Path(json.loads(manifest_before)["rows"][t.row]["run_folder"]) / "echo.json").stat().st_mtime_ns
            for t in table if t.state == "completed"}
    flag.touch()
    out = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                         text=True, env=os.environ | slurm, timeout=300)
    assert out.returncode == 0 and "resubmitting rows [1, 3]" in out.stdout, out.stdout + out.stderr
    table = _wait_done(sweep)
    assert [t.state for t in table] == ["completed"] * 4
    manifest = json.loads(manifest_before)
    for row in (1, 3):   # same identity as at the first submission
        ident = json.loads((Path(manifest["rows"][row]["run_folder"]) / "identity.json").read_text())
        assert ident == manifest["rows"][row]["identity"]
    for row, mtime in done.items():   # completed runs were not run again
        assert (Path(manifest["rows"][row]["run_folder"]) / "echo.json").stat().st_mtime_ns == mtime
    assert (sweep / "manifest.json").read_text() == manifest_before
    out = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                         text=True, env=os.environ | slurm, timeout=300)
    assert "nothing to resubmit" in out.stdout

"""The launcher against the project's real local Slurm (cluster/local_slurm/start.sh), MaxArraySize 10.

Every task is a real stream job on the session's egotoy data (tiny streams through the sweep's
`task_overrides`). The method classes below are importable by the tasks (the sweep's `pythonpath`
holds tests/): they make a stream slow enough to be interrupted, or fail until a flag exists.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, require

from actlab.families.continual.methods.finetune import Finetune

pytestmark = pytest.mark.slurm

STATE = Path(os.environ.get("ACTLAB_SLURM_TEST_DIR", "/var/tmp/actlab-slurm-test"))
SLURM_CONF = STATE / "etc" / "slurm.conf"
TESTS = Path(__file__).resolve().parent
HOSTILE = "a b 'q' \"dq\" $(touch {p}/pwned1) `touch {p}/pwned2`; touch {p}/pwned3"


class SlowFinetune(Finetune):
    """Finetune that sleeps `sleep_s` after each batch on a task's first Slurm attempt only (the
    sleep changes no result), and appends `<attempt> <batches seen>` to `marker` after each batch."""

    def __init__(self, sleep_s: float = 0.0, marker: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.sleep_s, self.marker, self.seen = sleep_s, marker, 0
        self.attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0"))

    def observe(self, batch) -> None:
        super().observe(batch)
        self.seen += 1
        if self.marker and "SLURM_JOB_ID" in os.environ:
            with open(self.marker, "a") as f:
                f.write(f"{self.attempt} {self.seen}\n")
        if self.attempt == 0 and "SLURM_JOB_ID" in os.environ:
            time.sleep(self.sleep_s)


class FailUnless(Finetune):
    """Finetune that fails at its first batch while `flag` does not exist, for lr == `fail_lr`."""

    def __init__(self, flag: str, fail_lr: float, **kw) -> None:
        super().__init__(**kw)
        self.fail = kw.get("lr") == fail_lr and not Path(flag).exists()

    def observe(self, batch) -> None:
        if self.fail:
            raise RuntimeError("failing on purpose: the flag file does not exist")
        super().observe(batch)


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
    slurm_env = {"SLURM_CONF": str(SLURM_CONF)}
    _empty_queue(os.environ | slurm_env)
    return slurm_env


def _empty_queue(env: dict, timeout: float = 120) -> None:
    """This test cluster is the tests' own: a job still queued (an earlier module's, or one restored from
    the state folder of an interrupted run) would hold the node's CPUs, so it is cancelled, named."""
    def queued() -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i %j %T %R"], env=env, capture_output=True, text=True).stdout
    left = queued()
    if not left.strip():
        return
    print(f"local Slurm: cancelling jobs left from earlier:\n{left}")
    subprocess.run(["scancel", "--full", "--quiet", "--user", str(os.getuid())], env=env, check=True, timeout=60)
    deadline = time.time() + timeout
    while queued().strip():
        assert time.time() < deadline, f"jobs still queued {timeout} s after scancel:\n{queued()}"
        time.sleep(1)


def slurm_diagnostics(env: dict, job: str | None = None) -> str:
    """What Slurm says about the queue, the node and `job`, for a test that timed out waiting."""
    cmds = [["squeue", "-o", "%i %j %T %M %R"], ["sinfo", "-N", "-o", "%N %T %C %E"]]
    if job:
        cmds.append(["sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State,Elapsed,Reason"])
    out = []
    for cmd in cmds:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        out.append(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


@pytest.fixture
def data_overrides(data_cfg, egotoy_splits, pretrained) -> list[str]:
    return [f"paths.data={json.dumps(str(data_cfg.root))}", f"paths.splits={json.dumps(str(egotoy_splits))}",
            f"paths.pretrained={json.dumps(str(pretrained))}"]


def hydra_list(items: list[str]) -> str:
    return "[" + ",".join(json.dumps(i) for i in items) + "]"


def _project(tmp: Path, name: str, grid: str, users: str, extra: str = "reference: null\n") -> Path:
    shutil.copytree(REPO / "configs", tmp / "configs")
    (tmp / "configs" / "continual" / "experiment" / f"{name}.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - override /method: finetune\nexperiment: {name}\nusers: {users}\n"
        f"seeds: [0]\ngrid:\n{grid}\ntransfer: none\n{extra}")
    return tmp


def _grid(tmp: Path, slurm: dict, name: str, task_overrides: list[str], *args: str,
          env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "jobs/grid.py"), f"experiment={name}", "cluster=local_slurm",
           f"cluster.env.SLURM_CONF={slurm['SLURM_CONF']}", f"configs={tmp / 'configs'}",
           f"task_overrides={hydra_list(task_overrides)}", f"pythonpath={hydra_list([str(TESTS)])}", *args]
    return subprocess.run(cmd, cwd=tmp, env=os.environ | {"ACTLAB_ROOT": str(tmp)} | (env or {}),
                          capture_output=True, text=True, timeout=300)


def _sweep(tmp: Path, name: str) -> Path:
    (sweep,) = (tmp / "sweeps" / name).iterdir()
    return sweep


def _wait_done(sweep: Path, timeout: float = 420) -> list:
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
    env = os.environ | {"SLURM_CONF": str(SLURM_CONF)}
    raise AssertionError(f"sweep {sweep} did not finish: {[(t.row, t.state) for t in sweep_status(sweep)]}\n"
                         + slurm_diagnostics(env))


def _uninterrupted(sweep: Path, row: int, results: Path) -> Path:
    """The same grid point run in this process with another submit time and the plain method."""
    from actlab import preemption
    from actlab.families.continual.engine import stream_job
    from actlab.launch.manifest import load_manifest
    from actlab.launch.task import task_config

    cfg = task_config(load_manifest(sweep), sweep, row)
    cfg.method._target_ = "actlab.families.continual.methods.finetune.Finetune"
    del cfg.method["sleep_s"], cfg.method["marker"]
    cfg.submitted, cfg.wandb.mode, cfg.paths.results = "20200101T000000Z", "disabled", str(results)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the task (OMP_NUM_THREADS = its CPUs): float sums depend on it
    try:
        return stream_job.run(cfg)
    finally:
        torch.set_num_threads(threads)
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _same_results(a: Path, b: Path) -> None:
    assert a != b
    pd.testing.assert_frame_equal(pd.read_parquet(a / "predictions.parquet"), pd.read_parquet(b / "predictions.parquet"),
                                  check_exact=True)
    assert json.loads((a / "summary.json").read_text()) == json.loads((b / "summary.json").read_text())


@pytest.mark.slow
def test_real_stream_grid_chunked_throttled_hostile_values(tmp_path, slurm, data_overrides):
    from actlab.results.store import iter_runs

    hostile = HOSTILE.format(p=tmp_path)
    names = ", ".join(json.dumps(v) for v in ["plain", hostile])
    # 3 lr x 2 names + the frozen reference the grid lacks = 7 points x 3 train users = 21 tasks
    _project(tmp_path, "launch_t", f"  method.lr: [0.1, 0.01, 0.001]\n  method.name: [{names}]", "train",
             extra="")
    out = _grid(tmp_path, slurm, "launch_t", ["data.max_clips=8", "wandb.mode=disabled", *data_overrides],
                "resources.array_parallelism=3", env={"WANDB_API_KEY": "sekret-key-4711"})
    assert out.returncode == 0, out.stderr
    # MaxArraySize 10 -> arrays of 10, 10, 1, each throttled to 3
    assert out.stdout.count("submitted array") == 3, out.stdout
    assert "10 tasks (rows 0..9, %3)" in out.stdout and "1 tasks (rows 20..20, %1)" in out.stdout
    sweep = _sweep(tmp_path, "launch_t")
    table = _wait_done(sweep)
    assert [t.state for t in table] == ["completed"] * 21
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["task_overrides"]["data.max_clips"] == 8
    assert [r["overrides"] for r in manifest["rows"][:3]] == [{"method": "frozen"}] * 3
    # the frozen reference's runs live in the shared reference group (launch/reference.py)
    runs = {str(r.folder): r for e in ("launch_t", "reference") for r in iter_runs(tmp_path / "results", e)}
    assert sorted(runs) == sorted(r["run_folder"] for r in manifest["rows"])
    import yaml

    for row in manifest["rows"]:
        run = runs[row["run_folder"]]
        assert run.identity.to_dict() == row["identity"]
        assert run.identity.submitted == (manifest["submitted"] if run.identity.experiment == "launch_t" else "shared")
        assert run.summary["online/action/n_samples"] == 8
        cfg = yaml.safe_load((run.folder / "config.yaml").read_text())
        if "method.name" in row["overrides"]:       # the value reached the task unchanged
            assert cfg["method"]["name"] == row["overrides"]["method.name"]
    arrays = {c["job_id"] for c in json.loads((sweep / "jobs.json").read_text())}
    logs = [p for p in (sweep / "logs").glob("*_log.out") if p.name.split("_")[0] in arrays]   # not the aggregation's
    assert len(logs) == 21 and all(f"code {sweep / 'code' / 'src' / 'actlab'}" in p.read_text() for p in logs)
    assert sum(r["overrides"].get("method.name") == hostile for r in manifest["rows"]) == 9
    assert not list(tmp_path.glob("pwned*")), "a grid value was executed"
    assert (sweep / "git.json").exists() and (sweep / "code" / "configs" / "continual" / "stream.yaml").exists()
    for f in sweep.rglob("*"):
        if f.is_file() and f.suffix in {".json", ".diff", ".out", ".err", ".sh", ""}:
            assert "sekret-key-4711" not in f.read_text(errors="replace"), f


def test_dry_run_submits_nothing(tmp_path, slurm, data_overrides):
    _project(tmp_path, "launch_dry", "  method.lr: [0.1, 0.2]", "['68', '265']")
    out = _grid(tmp_path, slurm, "launch_dry", data_overrides, "dry=1")
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --array=0-3%" in out.stdout and "dry run, nothing submitted: 4 tasks" in out.stdout
    assert "#SBATCH --signal=USR2@" in out.stdout and "wckey" not in out.stdout
    assert not (tmp_path / "sweeps").exists()
    after = subprocess.run(["sacct", "-n", "-X", "--name=actlab-launch_dry", "-o", "JobID"],
                           env=os.environ | slurm, capture_output=True, text=True).stdout
    assert after.strip() == ""


def test_bad_grid_value_or_task_override_stops_everything(tmp_path, slurm, data_overrides):
    _project(tmp_path, "launch_bad", "  method: [finetune, no_such_method]", "['68']")
    out = _grid(tmp_path, slurm, "launch_bad", data_overrides)
    assert out.returncode == 2
    assert "grid point [method=no_such_method] unit=68" in out.stderr and "no_such_method" in out.stderr
    assert not (tmp_path / "sweeps").exists()
    _project(tmp_path / "k", "launch_badkey", "  method.no_such_key: [1]", "['68']")
    out = _grid(tmp_path / "k", slurm, "launch_badkey", data_overrides)
    assert out.returncode == 2 and "method.no_such_key" in out.stderr
    _project(tmp_path / "t", "launch_badtask", "  method.lr: [0.1]", "['68']")
    out = _grid(tmp_path / "t", slurm, "launch_badtask", [*data_overrides, "data.no_such=3"])
    assert out.returncode == 2 and "data.no_such" in out.stderr, out.stderr
    assert not (tmp_path / "t" / "sweeps").exists()


@pytest.mark.slow
def test_status_shows_failure_and_resubmit_completes_it(tmp_path, slurm, data_overrides):
    flag = tmp_path / "let_lr_02_pass"
    _project(tmp_path, "launch_fail", "  method.lr: [0.1, 0.2]", "['68', '265']")
    out = _grid(tmp_path, slurm, "launch_fail",
                ["data.max_clips=8", "wandb.mode=disabled", *data_overrides,
                 "method._target_=test_launch_slurm.FailUnless", f"+method.flag={json.dumps(str(flag))}",
                 "+method.fail_lr=0.2"])
    assert out.returncode == 0, out.stderr
    sweep = _sweep(tmp_path, "launch_fail")
    manifest_before = (sweep / "manifest.json").read_text()
    table = _wait_done(sweep)
    assert [(t.point, t.state) for t in table] == [("method.lr=0.1", "completed")] * 2 + [("method.lr=0.2", "failed")] * 2
    failed = [t for t in table if t.state == "failed"]
    assert all(t.log and Path(t.log).exists() and "failing on purpose" in Path(t.log).read_text() for t in failed)
    status = subprocess.run([sys.executable, str(REPO / "jobs/status.py"), str(sweep)], capture_output=True,
                            text=True, env=os.environ | slurm, timeout=120)
    assert "failed" in status.stdout and failed[0].log in status.stdout, status.stdout + status.stderr
    manifest = json.loads(manifest_before)
    done = {t.row: (Path(manifest["rows"][t.row]["run_folder"]) / "summary.json").stat().st_mtime_ns
            for t in table if t.state == "completed"}
    flag.touch()
    out = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                         text=True, env=os.environ | slurm, timeout=300)
    assert out.returncode == 0 and "resubmitting rows [2, 3]" in out.stdout, out.stdout + out.stderr
    table = _wait_done(sweep)
    assert [t.state for t in table] == ["completed"] * 4
    for row in (2, 3):   # same identity as at the first submission
        record = json.loads((Path(manifest["rows"][row]["run_folder"]) / "identity.json").read_text())
        ident = {k: v for k, v in record.items() if k not in ("inputs", "labels")}   # identity.json adds these
        assert ident == manifest["rows"][row]["identity"]
    for row, mtime in done.items():   # completed runs were not run again
        assert (Path(manifest["rows"][row]["run_folder"]) / "summary.json").stat().st_mtime_ns == mtime
    assert (sweep / "manifest.json").read_text() == manifest_before
    out = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                         text=True, env=os.environ | slurm, timeout=300)
    assert "nothing to resubmit" in out.stdout


def _slow_stream(tmp_path, slurm, data_overrides, name: str, sleep_s: float, wandb: str, clips: int,
                 *args: str) -> tuple[Path, dict, Path]:
    marker = tmp_path / "batches.txt"
    _project(tmp_path, name, "", "['68']")     # one point: the defaults
    out = _grid(tmp_path, slurm, name,
                [f"data.max_clips={clips}", f"wandb.mode={wandb}", *data_overrides,
                 "method._target_=test_launch_slurm.SlowFinetune", f"+method.sleep_s={sleep_s}",
                 f"+method.marker={json.dumps(str(marker))}"], *args)
    assert out.returncode == 0, out.stderr
    sweep = _sweep(tmp_path, name)
    return sweep, json.loads((sweep / "manifest.json").read_text()), marker


def _check_resumed(sweep: Path, manifest: dict, marker: Path, tmp_path: Path, wandb: bool, batches: int) -> str:
    """One interruption, resumed from the checkpoint, same W&B id, results of an uninterrupted run."""
    run_folder = Path(manifest["rows"][0]["run_folder"])
    seen = [tuple(map(int, line.split())) for line in marker.read_text().split("\n") if line]
    attempts = {a: max(n for b, n in seen if b == a) for a, _ in seen}
    # the second attempt only did the batches the first had not
    assert sorted(attempts) == [0, 1] and 0 < attempts[0] < batches and attempts[0] + attempts[1] == batches, seen
    run_id = manifest["rows"][0]["identity"]["run_id"]
    records = list((tmp_path / "wandb").rglob("run-*.wandb"))
    if wandb:   # one offline W&B record per attempt, both with the run's id (resume="allow")
        assert len(records) == 2 and {p.name for p in records} == {f"run-{run_id}.wandb"}, records
    else:
        assert records == []
    _same_results(run_folder, _uninterrupted(sweep, 0, tmp_path / "reference"))
    return "".join(p.read_text(errors="replace") for p in (sweep / "logs").glob("*_log.out"))


@pytest.mark.slow
def test_scontrol_requeue_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, slurm, data_overrides):
    # W&B off: Slurm's SIGTERM reaches every process of the step, and wandb-core dies of it, which
    # fails the stream before its checkpoint (engine issue: the mirror must survive a dead service)
    sweep, manifest, marker = _slow_stream(tmp_path, slurm, data_overrides, "launch_rq", 2.0, "disabled", 24)
    (chunk,) = json.loads((sweep / "jobs.json").read_text())
    deadline = time.time() + 180
    while not (marker.exists() and marker.read_text().count("\n") >= 2):
        assert time.time() < deadline, "the stream never got going"
        time.sleep(0.5)
    assert chunk["array"] is False     # one task: a plain job
    subprocess.run(["scontrol", "requeue", chunk["job_id"]], check=True, env=os.environ | slurm)
    assert [t.state for t in _wait_done(sweep)] == ["completed"]
    log = _check_resumed(sweep, manifest, marker, tmp_path, wandb=False, batches=6)
    # Slurm was already ending the job: the task did not requeue it a second time
    assert "Slurm state COMPLETING" in log and "actlab task: requeued" not in log, log


@pytest.mark.slow
def test_time_limit_pre_timeout_signal_requeues_and_resumes(tmp_path, slurm, data_overrides):
    # slurmctld checks limits every 30 s and sends the warning up to 30 s earlier than asked: with
    # `USR2@10` it comes 20..50 s into the 1-minute limit, i.e. in the middle of 12 batches x 5 s,
    # and the next batch boundary (<= 5 s later) is before the limit
    sweep, manifest, marker = _slow_stream(tmp_path, slurm, data_overrides, "launch_to", 5.0, "offline", 48,
                                           "resources.time_min=1", "resources.signal_grace_s=10")
    assert [t.state for t in _wait_done(sweep, timeout=300)] == ["completed"]
    log = _check_resumed(sweep, manifest, marker, tmp_path, wandb=True, batches=12)
    assert "Slurm state RUNNING" in log and "actlab task: requeued" in log, log


@pytest.mark.slow
def test_make_run_pipeline_on_local_slurm(tmp_path, slurm, data_overrides):
    """Streams (frozen reference included) -> transfer (afterok) -> aggregation (afterany), waited for."""
    from actlab.results.store import iter_runs

    overrides = ["data.max_clips=8", "users=['68','265']", "wandb.mode=disabled", *data_overrides]
    out = subprocess.run([sys.executable, str(REPO / "jobs/run.py"), "cluster=local_slurm",
                          f"cluster.env.SLURM_CONF={slurm['SLURM_CONF']}", f"task_overrides={hydra_list(overrides)}",
                          "resources.array_parallelism=2"], cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "total: completed 8" in out.stdout
    sweep = _sweep(tmp_path, "egotoy_main")
    pipe = json.loads((sweep / "pipeline.json").read_text())
    (transfer,) = pipe["steps"]     # no pretraining step: the experiment does not ask for one
    assert len(pipe["arrays"]) == 1 and transfer["name"] == "transfer"
    assert transfer["argv"][2] == str(sweep / "code" / "jobs" / "transfer.py")
    assert f"submitted transfer job {transfer['job_id']} (afterok:{pipe['arrays'][0]})" in out.stdout
    assert (f"submitted aggregate job {pipe['aggregate']['job_id']} "
            f"(afterany:{pipe['arrays'][0]}:{transfer['job_id']})") in out.stdout
    tex = sweep / "report" / "table.tex"
    assert f"LaTeX table: {tex}" in out.stdout and tex.exists()
    # the frozen reference's runs live in the shared reference group (launch/reference.py)
    runs = [r for e in ("egotoy_main", "reference") for r in iter_runs(tmp_path / "results", e)]
    assert sorted(r.labels["variant"] for r in runs) == sorted(["frozen", "finetune", "replay", "label_window"] * 2)
    for run in runs:   # transfer: all -> each transferable model of the experiment on both users' streams
        have = sorted(p.stem for p in (run.folder / "transfer").glob("*.json"))
        # label_window has no model to transfer (its hindsight is in summary.json, not in transfer/);
        # the transfer step evaluates the experiment's runs: the shared reference has its own stream only
        want = {"label_window": [], "frozen": [run.identity.unit]}.get(run.labels["variant"], ["265", "68"])
        assert have == want, (run.labels, have)


# -- the second job kind: population pretraining as a grid (no units, seeds are the replicates) ---
def slow_x3d(sleep_s: float = 0.0, marker: str | None = None, **kw):
    """x3d_small whose training forward sleeps `sleep_s` on a task's first Slurm attempt (no change
    to any number) and appends `<attempt> <training forwards>` to `marker`."""
    from actlab.families.continual.models.factory import x3d_small

    model = x3d_small(**kw)
    attempt, seen = int(os.environ.get("SLURM_RESTART_COUNT", "0")), [0]

    def hook(module, args):
        if not module.training or "SLURM_JOB_ID" not in os.environ:
            return
        seen[0] += 1
        if marker:
            with open(marker, "a") as f:
                f.write(f"{attempt} {seen[0]}\n")
        if attempt == 0:
            time.sleep(sleep_s)

    model.register_forward_pre_hook(hook)
    return model


PRETRAIN_TINY = ["epochs=2", "data.max_clips=4", "batch_size=8", "num_workers=0", "wandb.mode=disabled"]


@pytest.mark.slow
def test_pretrain_grid_on_local_slurm_gives_a_table_over_seeds(tmp_path, slurm, data_overrides):
    """`make run EXP=egotoy_pretrain_lr CLUSTER=local_slurm`: 2 lr x 2 seeds as one array, then the
    aggregation job; the table holds mean +- SE over seeds; status and resubmit work as for streams."""
    out = subprocess.run([sys.executable, str(REPO / "jobs/run.py"), "experiment=egotoy_pretrain_lr",
                          "cluster=local_slurm", f"cluster.env.SLURM_CONF={slurm['SLURM_CONF']}",
                          "resources.array_parallelism=4", "--", *PRETRAIN_TINY, *data_overrides[:2]],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=os.environ | {"ACTLAB_ROOT": str(tmp_path)}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "total: completed 4" in out.stdout
    sweep = _sweep(tmp_path, "egotoy_pretrain_lr")
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["family"] == "pretrain" and manifest["reference_group"] is None
    assert [(r["unit"], r["seed"]) for r in manifest["rows"]] == [(None, 0), (None, 1)] * 2
    assert all("-u" not in r["identity"]["run_id"] for r in manifest["rows"])   # no unit in the run id
    pipe = json.loads((sweep / "pipeline.json").read_text())
    assert pipe["family"] == "pretrain" and pipe["steps"] == [] and len(pipe["arrays"]) == 1
    tidy = pd.read_csv(sweep / "report" / "aggregate.csv")
    n = tidy[(tidy.metric == "val/action/top1") & (tidy.stat == "n")]
    assert sorted(n.value) == [2.0, 2.0]       # two groups (lr), each over two seeds
    tex = (sweep / "report" / "table.tex").read_text()
    assert "lr=0.005" in tex and "lr=0.02" in tex and "$\\pm$" in tex, tex
    again = subprocess.run([sys.executable, str(REPO / "jobs/resubmit.py"), str(sweep)], capture_output=True,
                           text=True, env=os.environ | slurm, timeout=300)
    assert "nothing to resubmit" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
def test_scontrol_requeue_mid_epoch_resumes_pretraining_to_the_uninterrupted_result(tmp_path, slurm,
                                                                                     data_overrides):
    from actlab import preemption
    from actlab.families.pretrain import job as pretrain_job
    from actlab.launch.manifest import load_manifest
    from actlab.launch.task import task_config

    marker = tmp_path / "steps.txt"
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "continual" / "experiment" / "pre_rq.yaml").write_text(
        "# @package _global_\nfamily: pretrain\nexperiment: pre_rq\nseeds: [0]\nexport_to: null\n")
    out = _grid(tmp_path, slurm, "pre_rq", [*PRETRAIN_TINY, *data_overrides[:2],
                                             "model._target_=test_launch_slurm.slow_x3d", "+model.sleep_s=2.0",
                                             f"+model.marker={json.dumps(str(marker))}"])
    assert out.returncode == 0, out.stderr
    sweep = _sweep(tmp_path, "pre_rq")
    (chunk,) = json.loads((sweep / "jobs.json").read_text())
    deadline = time.time() + 300
    while not (marker.exists() and marker.read_text().count("\n") >= 3):
        assert time.time() < deadline, "pretraining never got going"
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", chunk["job_id"]], check=True, env=os.environ | slurm)
    assert [t.state for t in _wait_done(sweep, timeout=600)] == ["completed"]
    seen = [tuple(map(int, line.split())) for line in marker.read_text().split("\n") if line]
    assert {a for a, _ in seen} == {0, 1}, seen          # interrupted in epoch 1, resumed once
    manifest = load_manifest(sweep)
    run_folder = Path(manifest.rows[0].run_folder)
    # the same task config, uninterrupted, in this process, with the plain model
    cfg = task_config(manifest, sweep, 0)
    cfg.model._target_ = "actlab.families.continual.models.factory.x3d_small"
    del cfg.model["sleep_s"], cfg.model["marker"]
    cfg.submitted, cfg.paths.results = "20200101T000000Z", str(tmp_path / "reference")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = pretrain_job.run(cfg)
    finally:
        torch.set_num_threads(threads)
        preemption.clear()
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    a, b = (torch.load(f / "model.pt", weights_only=True) for f in (run_folder, whole))
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds", "decode_seconds")
    summary = lambda f: {k: v for k, v in json.loads((f / "summary.json").read_text()).items()  # noqa: E731
                         if k not in drop}
    assert summary(run_folder) == summary(whole)

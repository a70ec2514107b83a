"""Every command README.md shows in a ```bash block runs as shown, so the documentation cannot drift.

Each non-empty line of a ```bash block is a command (a trailing `# comment` stripped). A command is
either run here, from a scratch project root (ACTLAB_ROOT=<tmp>, the session's egotoy data, splits
and checkpoint linked in), or on SKIP with a reason; any other command fails the test, so a new
README command cannot go untested. What is changed to keep it short (the rules in `_argv`):
egotoy grids and streams see tiny streams and one user, `CLUSTER=bluecrystal` lines run with
`DRY=1` against temporary BlueCrystal paths. The `local_slurm` grids run for real on the project's
local Slurm (test_launch_slurm's cluster), and every command after a grid waits for the grid's
pipeline (its aggregation job) first, in README order.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, require
from ego4d_tree import write_tree
from test_launch_slurm import STATE, slurm  # noqa: F401  (the shared local Slurm fixture)

README = REPO / "README.md"

# A contiguous run of tokens -> why every command holding it is not run here. Keep this list short.
SKIP = {
    ("make", "test"): "the test suite itself",
    ("make", "test-slow"): "the slow part of the test suite itself",
    ("make", "run"): "~15 min; the pipeline it ends with (jobs/run.py) runs end to end with small settings "
                     "in tests/test_launch_local.py::test_make_run_local_runs_every_step_in_order",
    ("make", "bench"): "~10 min of benchmarks, not a check",
    ("--source", "wandb-api"): "needs the W&B API (no network here); that source is tested on recorded "
                               "objects in tests/test_post_sources.py",
}

# What keeps the run short. Egotoy grids: 8 clips per stream (a line's own TASK keys win), no W&B,
# one train user (10 tasks per egotoy_replay grid instead of 30).
EGOTOY_TASK = {"data.max_clips": "8", "wandb.mode": "disabled", "users": "[68]"}
# A direct stream job: 8 clips, W&B left on (offline, the default): the README's
# `--source wandb-offline` line reads the offline record this run writes.
STREAM_OVERRIDES = {"data.max_clips": "8"}
# The same settings as test_launch_slurm's `slurm` fixture: `make grid CLUSTER=local_slurm` calls
# cluster/local_slurm/start.sh, and a different value would restart the cluster other tests share.
SLURM_ENV = {"ACTLAB_SLURM_DIR": str(STATE), "ACTLAB_SLURM_MAX_ARRAY": "10", "ACTLAB_SLURM_PORT": "7817",
             "ACTLAB_SLURM_CPUS": "4"}
SCRIPTS = {"jobs/stream.py", "postprocess/to_latex.py", "postprocess/aggregate.py", "postprocess/plots.py"}
# The venv's interpreter, as a fresh clone has it after any `make` target; a bare `python` works only
# in a shell with the venv activated, which the README never asks for.
PYTHON = ".venv/bin/python"
MAKE_TARGETS = {"grid", "status", "resubmit", "tables"}
UNFINISHED = {"", "PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


@dataclass
class Command:
    line: str                          # as the README shows it, without its comment
    tokens: list[str]
    skip: str | None = None            # why it is not run
    kind: str | None = None            # "make grid", "make status", ..., "jobs/stream.py", ...
    make_vars: dict[str, str] = field(default_factory=dict)


def readme_commands(text: str) -> list[Command]:
    commands = []
    for block in re.findall(r"^```bash[ \t]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                commands.append(_classify(Command(" ".join(tokens), tokens)))
    return commands


def _contains(tokens: list[str], run: tuple[str, ...]) -> bool:
    return any(tuple(tokens[i:i + len(run)]) == run for i in range(len(tokens)))


def _classify(cmd: Command) -> Command:
    """Set `skip` or `kind`; neither means the test does not know how to run it here."""
    cmd.skip = next((why for run, why in SKIP.items() if _contains(cmd.tokens, run)), None)
    t = cmd.tokens
    if cmd.skip is None and t[0] == "make" and len(t) > 1 and t[1] in MAKE_TARGETS:
        if all(re.fullmatch(r"[A-Z_]+=.*", a, flags=re.S) for a in t[2:]):
            cmd.make_vars = dict(a.split("=", 1) for a in t[2:])
            exp, cluster = cmd.make_vars.get("EXP", "egotoy_main"), cmd.make_vars.get("CLUSTER", "local")
            grid_ok = cluster == "bluecrystal" or (cluster == "local_slurm" and exp.startswith("egotoy"))
            if t[1] != "grid" or grid_ok:
                cmd.kind = f"make {t[1]}"
    elif cmd.skip is None and t[0] == PYTHON and len(t) > 1 and t[1] in SCRIPTS:
        cmd.kind = t[1]
    return cmd


def _merge(words: str, extra: dict[str, str]) -> str:
    """Space-separated key=value overrides plus those of `extra` whose key they lack."""
    have = {w.split("=", 1)[0] for w in words.split()}
    return " ".join([*words.split(), *(f"{k}={v}" for k, v in extra.items() if k not in have)])


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 10, [c.line for c in commands]      # the parser found the blocks
    unknown = [c.line for c in commands if c.skip is None and c.kind is None]
    assert not unknown, (f"README commands this test neither runs nor skips: {unknown}; teach "
                         f"tests/test_readme.py to run them (or add a skip with a reason); scripts run "
                         f"as `{PYTHON} <script>`")
    assert {c.kind for c in commands} >= {"make grid", "make status", "make resubmit", "make tables",
                                          "jobs/stream.py", "postprocess/to_latex.py"}


# -- running them ------------------------------------------------------------------------------
def _project(tmp: Path, egotoy_root: Path, egotoy_splits: Path, pretrained: Path) -> dict[str, Path]:
    """A scratch project root (what paths/default.yaml puts under ACTLAB_ROOT) and BlueCrystal paths
    (the environment variables of configs/paths/bluecrystal.yaml)."""
    (tmp / "data").mkdir()
    (tmp / "checkpoints").mkdir()
    (tmp / "data" / "egotoy").symlink_to(egotoy_root)
    (tmp / "splits").symlink_to(egotoy_splits)
    (tmp / "checkpoints" / "egotoy_pretrained.pt").symlink_to(pretrained)
    # `make grid` checks the Ego4D inputs before a dry run too: a minimal tree in the real formats
    return write_tree(tmp / "bluecrystal")


def _argv(cmd: Command) -> list[str]:
    """The command as run here: make from the repository, scripts with this venv's python (the
    interpreter running the tests: .venv's under `make test`)."""
    if cmd.kind and cmd.kind.startswith("make "):
        v = dict(cmd.make_vars)
        if cmd.kind == "make grid" and v.get("CLUSTER") == "bluecrystal":
            v["DRY"] = "1"     # nothing to submit to: this machine is not BlueCrystal
            # the cluster's MaxArraySize, not asked of whichever Slurm this machine reaches
            v["ARGS"] = _merge(v.get("ARGS", ""), {"cluster.max_array_size": "1001"})
        elif cmd.kind == "make grid":
            v["TASK"] = _merge(v.get("TASK", ""), EGOTOY_TASK)
        return ["make", cmd.tokens[1], *(f"{k}={val}" for k, val in v.items())]
    # scripts run from the project root (tmp_path here); files the repository ships stay the repository's
    args = [str(REPO / a) if a.startswith("configs/") else a for a in cmd.tokens[2:]]
    if cmd.kind == "jobs/stream.py":
        args = _merge(" ".join(args), STREAM_OVERRIDES).split()
    return [sys.executable, str(REPO / cmd.kind), *args]


def _sweeps(root: Path) -> set[Path]:
    return {p.parent for p in (root / "sweeps").glob("*/*/manifest.json")}


def _job_state(job_id: str, env: dict) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], env=env,
                         capture_output=True, text=True, timeout=60).stdout.split()
    return out[0] if out else ""


def _wait_pipeline(sweep: Path, env: dict, timeout: float = 540) -> None:
    """Until the sweep's aggregation job (afterany on everything else) has ended; it must succeed."""
    pipe = json.loads((sweep / "pipeline.json").read_text())
    deadline = time.time() + timeout
    while (state := _job_state(pipe["aggregate"]["job_id"], env)) in UNFINISHED:
        if time.time() > deadline:
            raise AssertionError(f"{sweep}: aggregation job {pipe['aggregate']['job_id']} still {state!r}")
        time.sleep(3)
    log = Path(pipe["aggregate"]["log"])
    assert state == "COMPLETED", f"{sweep}: aggregation {state}: {log.read_text()[-3000:] if log.exists() else ''}"
    for step in pipe["steps"]:
        assert _job_state(step["job_id"], env) == "COMPLETED", (sweep, step)
    assert (sweep / "report" / "table.tex").exists()


def _printed_paths(stdout: str, cwd: Path) -> list[Path]:
    """Files a postprocessing script says it wrote (`label: path` lines or bare paths)."""
    found = re.findall(r"(?:^|:\s+)(\S+\.(?:tex|csv|parquet|png|pdf))\s*$", stdout, flags=re.M)
    return [cwd / p for p in found]


def _check(cmd: Command, out: subprocess.CompletedProcess, ctx: dict) -> None:
    """What each kind of command must have done, beyond exiting 0."""
    so = out.stdout
    if cmd.kind == "make grid" and cmd.make_vars.get("CLUSTER") == "bluecrystal":
        assert "#SBATCH --array=0-" in so and "dry run, nothing submitted" in so, so
        assert "#SBATCH --partition=" in so and "step aggregate" in so, so
        assert not (ctx["bluecrystal"]["ACTLAB_SCRATCH"] / "sweeps").exists()     # DRY: no sweep
    elif cmd.kind == "make grid":
        (sweep,) = _sweeps(ctx["root"]) - ctx["sweeps"]
        ctx["sweeps"].add(sweep)
        ctx["pending"].append(sweep)
        ctx["latest"] = sweep
        assert "submitted array" in so and "submitted aggregate job" in so and f"sweep: {sweep}" in so, so
        manifest = json.loads((sweep / "manifest.json").read_text())
        task = _merge(cmd.make_vars.get("TASK", ""), EGOTOY_TASK)   # what the task overrides came from
        assert str(manifest["task_overrides"]["data.max_clips"]) == dict(w.split("=", 1) for w in task.split())[
            "data.max_clips"]
        ctx["rows"][sweep] = len(manifest["rows"])
    elif cmd.kind == "make status":
        sweep = ctx["latest"]
        assert str(sweep) in so and f"total: completed {ctx['rows'][sweep]}" in so and "failed" not in so, so
    elif cmd.kind == "make resubmit":
        assert f"{ctx['latest']}: nothing to resubmit" in so, so
    elif cmd.kind == "make tables":
        tex = ctx["latest"] / "report" / "table.tex"
        assert f"LaTeX table: {tex}" in so and tex.exists(), so
    elif cmd.kind == "jobs/stream.py":
        folder = Path(so.strip().splitlines()[-1])           # the job prints its run folder last
        assert folder.is_relative_to(ctx["root"] / "results"), so
        assert json.loads((folder / "status.json").read_text())["state"] == "completed"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["online/action/n_samples"] == int(STREAM_OVERRIDES["data.max_clips"])
    else:   # postprocess/*.py
        paths = _printed_paths(so, ctx["root"])
        assert paths and all(p.exists() for p in paths), so
        if cmd.kind == "postprocess/to_latex.py":
            assert "LaTeX table:" in so and any(p.suffix == ".tex" for p in paths), so
        if "--reported" in cmd.tokens:   # the published rows are under the measured ones
            tex = next(p for p in paths if p.name == "table.tex").read_text()
            assert "SGD finetune$^\\ast$" in tex and "not measured here" in tex, tex
        if "--sweep" in cmd.tokens:      # `latest`: the grid submitted last
            assert all(p.resolve().is_relative_to(ctx["latest"]) for p in paths), so


@pytest.mark.slow
@pytest.mark.slurm
def test_every_readme_command_works_as_shown(tmp_path, slurm, egotoy_root, egotoy_splits, pretrained):  # noqa: F811
    require(shutil.which("make") is not None, "make is not installed")
    commands = readme_commands(README.read_text())
    assert all(c.skip or c.kind for c in commands), "see test_every_readme_command_is_run_or_skipped_with_a_reason"
    bluecrystal = _project(tmp_path, egotoy_root, egotoy_splits, pretrained)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | SLURM_ENV | slurm | {
        "ACTLAB_ROOT": str(tmp_path)}
    ctx = {"root": tmp_path, "bluecrystal": bluecrystal, "sweeps": _sweeps(tmp_path), "pending": [],
           "latest": None, "rows": {}}
    ran = []
    for cmd in commands:
        if cmd.skip:
            print(f"skipped: {cmd.line}  ({cmd.skip})")
            continue
        if cmd.kind != "make grid":        # everything else reads what the grids submitted: wait for them
            while ctx["pending"]:
                _wait_pipeline(ctx["pending"].pop(0), env)
        argv = _argv(cmd)
        cmd_env = env | ({k: str(v) for k, v in bluecrystal.items()} if cmd.make_vars.get("CLUSTER") == "bluecrystal"
                         else {})
        start = time.time()
        # make from the repository (its Makefile and .venv); scripts from the project root, as
        # the README's relative paths (results, wandb, reports/...) mean
        out = subprocess.run(argv, cwd=REPO if argv[0] == "make" else tmp_path, env=cmd_env,
                             capture_output=True, text=True, timeout=600)
        print(f"{time.time() - start:5.1f} s  {cmd.line}\n      ran: {shlex.join(argv)}")
        assert out.returncode == 0, f"{cmd.line}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        _check(cmd, out, ctx)
        ran.append(cmd.line)
    while ctx["pending"]:                  # a grid last: its pipeline must still succeed
        _wait_pipeline(ctx["pending"].pop(0), env)
    assert len(ran) + sum(bool(c.skip) for c in commands) == len(commands)

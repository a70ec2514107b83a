"""Peak memory of a stream job: as the stream grows 4x, and for replay with memory 64 / 1,000 / full.

Each point is a fresh process running the real stream job (`actlab.families.continual.engine.stream_job.run` on
configs/continual/stream.yaml, W&B disabled, hindsight on) that reports its own peak RSS
(VmHWM of /proc/self/status) when done. The stream grows 48 -> 96 -> 192 clips
(`data.max_clips`), with the clip cache on (the egotoy default: decoded clips kept, so memory
grows by design) and off (should stay flat).
Figures: peak RSS in MiB and the ratio of the largest stream to the smallest.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _egotoy
from common import Record

CHILD = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from hydra import compose, initialize_config_dir
from actlab.families.continual.engine.stream_job import run
repo, overrides = sys.argv[1], json.loads(sys.argv[2])
with initialize_config_dir(config_dir=repo + "/configs/continual", version_base="1.3"):
    cfg = compose("stream", overrides=overrides)
run(cfg)
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child of a big
# parent (make bench's run_all) would report the parent's peak.
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
print("PEAK_RSS_KB", int(hwm.split()[1]))
"""
GROWTH = (48, 96, 192)
MEMORY_SIZES = ("64", "1000", "full")


def peak_rss_mib(tmp: Path, name: str, extra: list[str]) -> float:
    root = tmp / name
    overrides = [f"paths.root={root}", f"paths.data={_egotoy.DATA}", f"paths.splits={_egotoy.SPLITS}",
                 f"paths.pretrained={_egotoy.checkpoint_path()}",
                 f"user={_egotoy.TRAIN_USERS[0]}", "seed=0", "wandb.mode=disabled", *extra]
    out = subprocess.run([sys.executable, "-c", CHILD, str(_egotoy.REPO), json.dumps(overrides)],
                         capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(_egotoy.REPO / "src"), "PATH": "/usr/bin:/bin",
                              "WANDB_MODE": "disabled", "HOME": str(tmp)})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEAK_RSS_KB")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"stream job {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return int(lines[-1].split()[1]) / 1024


def main() -> None:
    _egotoy.ensure()
    fig, raw = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cache in ("true", "false"):
            for n in GROWTH:
                raw[f"finetune_cache_{cache}_clips_{n}"] = peak_rss_mib(
                    tmp, f"ft_{cache}_{n}", [f"data.max_clips={n}", f"cache_clips={cache}"])
            fig[f"finetune_cache_{cache}_peak_mib_{GROWTH[0]}_clips"] = raw[f"finetune_cache_{cache}_clips_{GROWTH[0]}"]
            fig[f"finetune_cache_{cache}_peak_mib_{GROWTH[-1]}_clips"] = raw[f"finetune_cache_{cache}_clips_{GROWTH[-1]}"]
            fig[f"finetune_cache_{cache}_growth_4x_ratio"] = (raw[f"finetune_cache_{cache}_clips_{GROWTH[-1]}"]
                                                             / raw[f"finetune_cache_{cache}_clips_{GROWTH[0]}"])
        for size in MEMORY_SIZES:
            raw[f"replay_memory_{size}"] = peak_rss_mib(
                tmp, f"replay_{size}", [f"data.max_clips={GROWTH[-1]}", "method=replay", f"method.memory_size={size}"])
            fig[f"replay_memory_{size}_peak_mib"] = raw[f"replay_memory_{size}"]
        fig["replay_full_over_64"] = raw["replay_memory_full"] / raw["replay_memory_64"]
    Record("memory", figures=fig, raw={"peak_rss_mib": raw}, notes=[
        f"user {_egotoy.TRAIN_USERS[0]}, stream job in a fresh process per point, peak RSS of that process",
        f"stream sizes {GROWTH} clips; replay on {GROWTH[-1]} clips with the default clip cache "
        "(an egotoy stream has ~200 samples, so memory 1000 = full here)",
        "cache_clips=true keeps every decoded clip: the growth is the cache, by design"]).write()


if __name__ == "__main__":
    main()

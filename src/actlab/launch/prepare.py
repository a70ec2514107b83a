"""Write a sweep folder (manifest + code snapshot) without submitting; prints its path.

For jobs/submit_stream.sh: `python -m actlab.launch.prepare <experiment> [launch overrides]`
(e.g. `'task_overrides=["data.max_clips=16"]'`); the submit timestamp comes from ACTLAB_SUBMITTED
(set by the shell at submit time) when present.
"""
import os
import sys

from hydra import compose, initialize_config_dir

from actlab.launch.submit import REPO, _plain, _plain_list, prepare

if __name__ == "__main__":
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="launch", overrides=sys.argv[2:])
    cfg.experiment = sys.argv[1]   # also a config group name in configs/: not a Hydra override
    sweep, _ = prepare(cfg.experiment, _plain(cfg.cluster), _plain(cfg.resources),
                       configs=cfg.configs, sweeps_root=cfg.get("sweeps"),
                       submitted=os.environ.get("ACTLAB_SUBMITTED"),
                       task_overrides=[str(o) for o in _plain_list(cfg.task_overrides)],
                       pythonpath=_plain_list(cfg.pythonpath))
    (sweep / "logs").mkdir(exist_ok=True)
    print(sweep)

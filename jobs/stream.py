"""Adapt the pretrained model online to one user's stream: see actlab.engine.stream_job.

    python jobs/stream.py experiment=egotoy_main user=68 method=replay method.memory_size=8
"""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from actlab.engine import preemption, stream_job


@hydra.main(config_path="../configs", config_name="stream", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.overrides:
        # Run by hand, not by the launcher: the command line's own choices define the grid
        # point, so `method=frozen` and `method=replay` land in different groups. Keys listed in
        # hydra.job.config.override_dirname.exclude_keys say where/how much (the launcher's
        # task_overrides, e.g. data.max_clips), not which point: they stay out of the group hash.
        hc = HydraConfig.get()
        skip = set(hc.job.config.override_dirname.exclude_keys)
        point = stream_job.point_overrides(list(hc.overrides.task))
        cfg.overrides = {k: v for k, v in point.items() if k not in skip}
    try:
        print(stream_job.run(cfg))
    except preemption.Preempted as stop:
        print(stop)
        sys.exit(preemption.REQUEUE_EXIT_CODE)


if __name__ == "__main__":
    main()

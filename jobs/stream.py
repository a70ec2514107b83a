"""Adapt the pretrained model online to one user's stream: see actlab.engine.stream_job."""
import sys

import hydra
from omegaconf import DictConfig

from actlab.engine import preemption, stream_job


@hydra.main(config_path="../configs", config_name="stream", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        print(stream_job.run(cfg))
    except preemption.Preempted as stop:
        print(stop)
        sys.exit(preemption.REQUEUE_EXIT_CODE)


if __name__ == "__main__":
    main()

"""The continual family's job: adapt the pretrained model online to one user's stream
(actlab.families.continual.engine.stream_job).

    python jobs/stream.py experiment=egotoy_main user=68 method=replay method.memory_size=8
"""
import hydra
from omegaconf import DictConfig

from actlab.families.continual import FAMILY
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/continual", config_name="stream", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

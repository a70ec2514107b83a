"""The ak family's job: one Animal Kingdom run (actlab.families.ak.job).

    python jobs/ak_train.py [loss=focal] [model=clip_temporal] [seed=1] [data=ak clip=vit_b16]
"""
import hydra
from omegaconf import DictConfig

from actlab.families.ak import FAMILY
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/ak", config_name="ak", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

"""The pretrain family's job: train the population model on the pretrain users
(actlab.families.pretrain.job). `make pretrain` runs it to write ${paths.pretrained}.

    python jobs/pretrain.py [force=true] [epochs=8] [optimizer.lr=0.02] [seed=1]
"""
import hydra
from omegaconf import DictConfig

from actlab.families.pretrain import FAMILY
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/continual", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

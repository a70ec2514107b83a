"""One zero-shot TAL run (actlab.families.zstal.job): train the class-agnostic detector on the seen
classes of a class split, name its proposals with CLIP over the unseen ones, score.

    python jobs/zstal_train.py [data=zstaltoy_thumos|zstaltoy_anet|thumos14|anet13] [split_ratio=75] split_id=0 [seed=0]
"""
import hydra
from omegaconf import DictConfig

from actlab.families.zstal import FAMILY
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/zstal", config_name="zstal", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

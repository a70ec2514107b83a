"""The hand family's job (actlab.families.hand.job): pose estimation, action recognition, the
evaluation modes, or the embedded data set.

    python jobs/hand.py task=hpe experiment=handtoy_main [film.enabled=true] [protocol.name=fpha_xsub] [seed=1]
    python jobs/hand.py task=har experiment=handtoy_main [har.input=pca]
    python jobs/hand.py task=eval experiment=handtoy_main      # after the hpe (film off/on) and har (gt) runs
    python jobs/hand.py task=data experiment=handtoy_main      # write handtoy (make hand-data)
"""
import hydra
from omegaconf import DictConfig

from actlab.families.hand import FAMILY
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/hand", config_name="hand", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

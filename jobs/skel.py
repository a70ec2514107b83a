"""The skel family's job (actlab.families.skel.job): one benchmark split x variant x seed.

    python jobs/skel.py experiment=ntutoy_main split=ntutoy_xsub loss=itc [seed=1]
    python jobs/skel.py experiment=ntutoy_main prepare=true      # only write data/ntutoy if missing
"""
import hydra
from omegaconf import DictConfig

from actlab.families.skel import FAMILY
from actlab.families.skel.job import prepare
from actlab.job import run_by_hand


@hydra.main(config_path="../configs/skel", config_name="skel", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.prepare:
        prepare(cfg)
        return
    run_by_hand(cfg, FAMILY)


if __name__ == "__main__":
    main()

"""The zstal family's preparation step: write the embedded set `zstaltoy` under ${paths.zstaltoy}
(skipped when it is there and complete for the seed).

    python jobs/make_zstaltoy.py [+toy_seed=1] [paths.zstaltoy=/somewhere]
"""
import hydra
from omegaconf import DictConfig

from actlab.families.zstal.zstaltoy import generate


@hydra.main(config_path="../configs/zstal", config_name="zstal", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(f"zstaltoy: {generate(cfg.paths.zstaltoy, int(cfg.get('toy_seed') or 0))}")


if __name__ == "__main__":
    main()

"""Decode every user stream of an experiment once into the decode cache (the continual family's
preparation step; actlab.families.continual.data.decode_once). The sweep's stream jobs then read
the cache instead of decoding the same videos in every grid point.

    python jobs/decode_cache.py experiment=ego4d_momentum [workers=4] [data.cache_dir=/local/scratch/clips]
"""
import hydra
from omegaconf import DictConfig

from actlab.families.continual.data.decode_once import prepare


@hydra.main(config_path="../configs/continual", config_name="decode_cache", version_base="1.3")
def main(cfg: DictConfig) -> None:
    done = prepare(cfg, workers=cfg.workers)
    written = sum(p.written for p in done)
    print(f"decode cache: {written} entr{'y' if written == 1 else 'ies'} written, {len(done) - written} present")


if __name__ == "__main__":
    main()

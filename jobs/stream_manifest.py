"""Print a user stream's SHA-256 and size, optionally write its manifest:
python jobs/stream_manifest.py user=<id> [out=path.json]"""
from pathlib import Path

import hydra
from omegaconf import DictConfig

from actlab.atomic import atomic_write_json
from actlab.families.continual.data.stream_builder import manifest
from actlab.families.continual.data.user_streams import open_user_stream


@hydra.main(config_path="../configs/continual", config_name="stream_manifest", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.user is None:
        raise ValueError("stream_manifest: `user` must be set (e.g. `user=68`)")
    stream = open_user_stream(cfg.data, cfg.user)
    print(f"user {stream.user}: {len(stream.clips)} clips sha256 {stream.sha256}")
    print("stats: " + " ".join(f"{k}={v}" for k, v in stream.stats.items()))
    if cfg.out is not None:
        path = atomic_write_json(Path(cfg.out), {"user": stream.user, "sha256": stream.sha256,
                                                 "stats": stream.stats, "clips": manifest(stream.clips)})
        print(f"manifest -> {path}")


if __name__ == "__main__":
    main()

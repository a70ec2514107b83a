"""Train the population model on the pretrain split: see actlab.train.pretrain."""
import hydra
from omegaconf import DictConfig

from actlab.train import pretrain


@hydra.main(config_path="../configs", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(pretrain.run(cfg))


if __name__ == "__main__":
    main()

"""Evaluate final models on users' streams (HAG / transfer matrix): see actlab.families.continual.engine.transfer_job."""
import hydra
from omegaconf import DictConfig

from actlab.families.continual.engine import transfer_job


@hydra.main(config_path="../configs/continual", config_name="transfer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(f"{transfer_job.run(cfg)} (model, stream) pair(s) evaluated")


if __name__ == "__main__":
    main()

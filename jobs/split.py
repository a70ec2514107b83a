"""Write the user split files: see actlab.families.continual.data.split. python jobs/split.py [data=ego4d] [overrides]"""
import hydra
from omegaconf import DictConfig

from actlab.families.continual.data.ego4d import load_annotations
from actlab.families.continual.data.split import make_splits, write_splits


@hydra.main(config_path="../configs/continual", config_name="split", version_base="1.3")
def main(cfg: DictConfig) -> None:
    d, s = cfg.data, cfg.data.split
    df = load_annotations(d.root, metadata=d.metadata, annotations_dir=d.annotations_dir,
                          missing_origin=d.missing_origin)
    splits = make_splits(df, criterion=s.criterion, seed=s.seed, pool_size=s.pool_size,
                         train_users=list(s.train_users), test_users=list(s.test_users),
                         n_train=s.n_train, n_test=s.n_test)
    paths = write_splits(splits, d.splits_dir)
    for name, split in splits.items():
        c = split.counts()
        print(f"{name}: {c['users']} users, {c['clips']} clips, {c['annotations']} annotations -> {paths[name]}")
        if name != "pretrain":
            print(f"  users: {' '.join(split.users)}")
        if split.absent_users:
            print(f"  absent from the data: {' '.join(split.absent_users)}")
    unassigned = splits["train"].unassigned_pool_users
    if unassigned:
        print(f"pool users in no split: {' '.join(unassigned)}")


if __name__ == "__main__":
    main()

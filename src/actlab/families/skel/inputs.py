"""What `make grid` checks before it writes a sweep (docs/families.md): for every split the
experiment reads, the pickle and the class-name CSV exist (an embedded set that the preparation
step writes is exempt); the CLIP text weights exist when a text variant loads them. Cheap: no file
is opened."""
from __future__ import annotations

from omegaconf import DictConfig

from actlab.launch.preflight import missing


def check_inputs(cfg: DictConfig) -> list[str]:
    from actlab.families.skel.job import dataset_of

    problems: list[str] = []
    splits = list(cfg.splits) + ([cfg.split] if cfg.get("split") else [])
    for name in dict.fromkeys(str(s) for s in splits):
        try:
            ds, _ = dataset_of(cfg, name)
        except ValueError as e:
            problems.append(str(e))
            continue
        if ds.get("generate"):
            continue
        key = f"datasets.{name.partition('_')[0]}"
        problems += filter(None, (missing(cfg, f"{key}.pickle", ds.pickle), missing(cfg, f"{key}.labels", ds.labels)))
    if str(cfg.loss.name) != "ce" and cfg.text.pretrained:
        problems += filter(None, [missing(cfg, "paths.clip_text_weights", cfg.paths.clip_text_weights)])
    return list(dict.fromkeys(problems))

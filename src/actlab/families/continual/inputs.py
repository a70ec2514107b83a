"""The continual and pretrain families' pre-submit input check (`Family.check_inputs`): what their
jobs will read exists, and the pretrained checkpoint's heads fit the data's label spaces.

Cheap on real Ego4D: file and folder existence, and from the checkpoint only the two head tensors'
shapes (a zip checkpoint is memory-mapped, so a large file is not read; nothing is hashed).
Clip files are not checked one by one here: a stream job checks its own before it starts.
"""
from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from actlab.errors import DataError
from actlab.families.continual.data.ego4d import ANNOTATION_FILES
from actlab.families.continual.data.user_streams import LOOKUP_ORDER
from actlab.launch.preflight import how_to_set, missing

HEADS = {"verb": "verb_head.weight", "noun": "noun_head.weight"}   # [classes, features]
# shown when a head is absent: the project's name, and the SlowFast library's (models/slowfast_keys.py)
HEAD_NAMES = {"verb": "verb_head.weight or head.projections.0.weight",
              "noun": "noun_head.weight or head.projections.1.weight"}


@dataclass(frozen=True)
class HeadSizes:
    verbs: int
    nouns: int


@functools.lru_cache(maxsize=8)
def _heads(path: str, size: int, mtime_ns: int) -> HeadSizes:
    # The jobs' own reader (models/weights.py): every accepted layout, prefix and key naming;
    # memory-mapped, so only the two head tensors' bytes are touched. Imported here: torch is not
    # needed to list a family or to check the other inputs.
    from actlab.families.continual.models.weights import read_state_dict

    sd, _ = read_state_dict(path, mmap=zipfile.is_zipfile(path))
    rows = {}
    for head, key in HEADS.items():
        if key not in sd:
            raise DataError(f"no {head} head in the checkpoint (looked for {HEAD_NAMES[head]})")
        rows[head] = int(sd[key].shape[0])
    return HeadSizes(verbs=rows["verb"], nouns=rows["noun"])


def checkpoint_heads(path: str | Path) -> HeadSizes:
    """The number of verb and noun classes of a checkpoint's heads (cached by path, size and mtime)."""
    stat = Path(path).stat()
    return _heads(str(path), stat.st_size, stat.st_mtime_ns)


def data_problems(cfg: DictConfig) -> list[str]:
    d = cfg.data
    problems = [missing(cfg, "data.metadata", d.metadata),
                *(_in_folder(cfg, "data.annotations_dir", name) for name in ANNOTATION_FILES),
                missing(cfg, "data.clips_dir", d.clips_dir, kind="folder")]
    return [p for p in problems if p]


def _in_folder(cfg: DictConfig, key: str, name: str, why: str = "") -> str | None:
    folder = Path(OmegaConf.select(cfg, key))
    if (folder / name).is_file():
        return None
    return f"{key} = {folder}: no {name}{why} {how_to_set(cfg, key)}"


def split_problems(cfg: DictConfig, names: list[str]) -> list[str]:
    why = f"; `python jobs/split.py data={cfg.data.name}` writes it"
    return [p for p in (_in_folder(cfg, "data.splits_dir", f"{n}.json", why) for n in names) if p]


def needed_splits(cfg: DictConfig) -> list[str]:
    """The split files a continual sweep reads: the units' (`users: train` reads train.json; a stream
    job finds its user in LOOKUP_ORDER, so test users also need train.json, listed ids all three),
    pretrain.json for the seen-action set, and pretrain + train for a pretraining step."""
    users = cfg.get("users")
    if isinstance(users, str):
        names = list(LOOKUP_ORDER[:LOOKUP_ORDER.index(users) + 1]) if users in LOOKUP_ORDER else [users]
    else:
        names = list(LOOKUP_ORDER)
    if cfg.data.get("drop_unseen") or cfg.get("pretrain"):
        names.append("pretrain")
    if cfg.get("pretrain"):
        names.append("train")
    return list(dict.fromkeys(names))


def checkpoint_problems(cfg: DictConfig) -> list[str]:
    path = Path(cfg.paths.pretrained)
    if not path.is_file():
        # with `pretrain: true` the pipeline's pretraining step writes it before the streams start
        return [] if cfg.get("pretrain") else [missing(cfg, "paths.pretrained", path)]
    try:
        heads = checkpoint_heads(path)
    except DataError as err:
        return [f"paths.pretrained = {path}: {err}"]
    return [f"paths.pretrained = {path}: {head} head has {have} classes, data.num_{head}s = {want}"
            for head, have, want in (("verb", heads.verbs, int(cfg.data.num_verbs)),
                                     ("noun", heads.nouns, int(cfg.data.num_nouns))) if have != want]


def check_continual(cfg: DictConfig) -> list[str]:
    return data_problems(cfg) + split_problems(cfg, needed_splits(cfg)) + checkpoint_problems(cfg)


def check_pretrain(cfg: DictConfig) -> list[str]:
    """The pretrain job reads the pretrain users' streams and validates on the train users'."""
    return data_problems(cfg) + split_problems(cfg, ["pretrain", "train"])

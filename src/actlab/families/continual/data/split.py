"""User split: rank users by clip minutes, the top `pool_size` form the train/test pool, everyone
else (and the NaN user) is the pretrain population. See docs/protocol.md.

Criteria: "paper" takes the published train/test user ids (ids absent from the data are reported in
`absent_users`, never silently dropped); "random" permutes the pool with a seed and takes
`n_train` + `n_test` users. Pool users that neither criterion assigns stay out of every split
(reported as `unassigned_pool_users`) so the pretrain population is exactly "outside the pool".
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from actlab.atomic import atomic_write_json
from actlab.errors import DataError
from actlab.families.continual.data.records import action_key

SPLITS = ("pretrain", "train", "test")
NAN_USER = "nan"  # key of the user without fb_participant_id in the split files
CRITERIA = ("paper", "random")


@dataclass
class SplitResult:
    name: str
    users: list[str]                  # in rank order (most clip minutes first)
    rows: pd.DataFrame                # the annotation rows of these users
    absent_users: list[str] = field(default_factory=list)
    unassigned_pool_users: list[str] = field(default_factory=list)
    minutes: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "annotations": len(self.rows),
                "clips": int(self.rows["clip_uid"].nunique()) if len(self.rows) else 0}


def user_minutes(df: pd.DataFrame) -> pd.Series:
    """Total clip minutes per user (NaN user included as NAN_USER), most first, ties by id.

    Rows are annotations; a clip's duration (parent end - parent start) counts once per clip.
    """
    clips = df.assign(user=df["user"].map(lambda u: NAN_USER if u is None or u != u else str(u)))
    clips = clips.drop_duplicates("clip_uid")
    minutes = (clips["clip_parent_end_sec"] - clips["clip_parent_start_sec"]).groupby(clips["user"]).sum() / 60.0
    order = sorted(minutes.index, key=lambda u: (-minutes[u], u))
    return minutes[order]


def ranked_pool(df: pd.DataFrame, pool_size: int) -> list[str]:
    return [u for u in user_minutes(df).index if u != NAN_USER][:pool_size]


def make_splits(df: pd.DataFrame, criterion: str = "paper", seed: int = 0, pool_size: int = 50,
                train_users: list[Any] | None = None, test_users: list[Any] | None = None,
                n_train: int = 10, n_test: int = 40) -> dict[str, SplitResult]:
    """Split annotation rows (from `ego4d.load_annotations`) into pretrain / train / test users."""
    if criterion not in CRITERIA:
        raise DataError(f"split criterion `{criterion}` unknown; expected one of {CRITERIA}")
    df = df.assign(user=df["user"].map(lambda u: NAN_USER if u is None or u != u else str(u)))
    minutes = user_minutes(df)
    pool = ranked_pool(df, pool_size)
    present = set(minutes.index)
    absent: dict[str, list[str]] = {"train": [], "test": []}
    if criterion == "paper":
        wanted = {"train": [str(u) for u in train_users or []], "test": [str(u) for u in test_users or []]}
        overlap = set(wanted["train"]) & set(wanted["test"])
        if overlap:
            raise DataError(f"users in both train_users and test_users: {sorted(overlap)}")
        chosen = {}
        for name, ids in wanted.items():
            chosen[name] = [u for u in ids if u in present]
            absent[name] = [u for u in ids if u not in present]
    else:
        if n_train + n_test > len(pool):
            raise DataError(f"random split needs n_train + n_test = {n_train + n_test} users, "
                            f"the pool has {len(pool)} (pool_size={pool_size})")
        perm = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
        chosen = {"train": perm[:n_train], "test": perm[n_train:n_train + n_test]}
    assigned = set(chosen["train"]) | set(chosen["test"])
    unassigned = [u for u in pool if u not in assigned]
    # Pretrain = everyone outside the pool (NaN user included), minus any assigned id the paper
    # list names from outside the pool, so no user is in two splits.
    chosen["pretrain"] = [u for u in minutes.index if u not in pool and u not in assigned]
    rank = {u: i for i, u in enumerate(minutes.index)}
    out = {}
    for name in SPLITS:
        users = sorted(chosen[name], key=rank.__getitem__)
        out[name] = SplitResult(
            name=name, users=users, rows=df[df["user"].isin(users)].reset_index(drop=True),
            absent_users=absent.get(name, []), unassigned_pool_users=unassigned,
            minutes={u: float(minutes[u]) for u in users})
    return out


def action_sets(rows: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """{verb,noun,action}_to_name_dict: label -> {"name", "count"} (count = annotations)."""
    verbs: dict[str, dict[str, Any]] = {}
    nouns: dict[str, dict[str, Any]] = {}
    actions: dict[str, dict[str, Any]] = {}
    counts: dict[str, Counter] = {"v": Counter(), "n": Counter(), "a": Counter()}
    for v, vn, n, nn in zip(rows["verb_label"], rows["verb"], rows["noun_label"], rows["noun"]):
        a = action_key(v, n)
        verbs.setdefault(str(int(v)), {"name": vn})
        nouns.setdefault(str(int(n)), {"name": nn})
        actions.setdefault(a, {"name": f"{vn}-{nn}"})
        counts["v"][str(int(v))] += 1
        counts["n"][str(int(n))] += 1
        counts["a"][a] += 1
    for d, c in ((verbs, counts["v"]), (nouns, counts["n"]), (actions, counts["a"])):
        for k in d:
            d[k]["count"] = c[k]
    return {"verb_to_name_dict": verbs, "noun_to_name_dict": nouns, "action_to_name_dict": actions}


def json_rows(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (numpy scalars -> Python, NaN -> null)."""
    out = []
    for rec in rows.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            clean[k] = v
        out.append(clean)
    return out


def split_document(split: SplitResult) -> dict[str, Any]:
    """The reference split-file schema (+ absent_users, unassigned_pool_users, user_minutes)."""
    users = {u: json_rows(split.rows[split.rows["user"] == u]) for u in split.users}
    sets = {"user_agnostic": action_sets(split.rows)}
    sets |= {u: action_sets(split.rows[split.rows["user"] == u]) for u in split.users}
    return {"split": split.name, "users": users, "clips": [r for u in split.users for r in users[u]],
            "user_action_sets": sets, "absent_users": split.absent_users,
            "unassigned_pool_users": split.unassigned_pool_users, "user_minutes": split.minutes}


def write_splits(splits: dict[str, SplitResult], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {name: atomic_write_json(out_dir / f"{name}.json", split_document(s)) for name, s in splits.items()}


def experiment_users(spec: Any, splits_dir: str | Path) -> list[str]:
    """An experiment's `users`: `train` / `test` (the user ids of that split file) or a list of ids."""
    if isinstance(spec, str):
        path = Path(splits_dir) / f"{spec}.json"
        if not path.exists():
            raise DataError(f"users: {spec!r} needs the split file {path} (run `make split` first)")
        users = json.loads(path.read_text()).get("users")
        if not isinstance(users, dict) or not users:
            raise DataError(f"{path}: no `users` in the split file")
        return [str(u) for u in users]
    if isinstance(spec, (list, tuple)) and spec:
        return [str(u) for u in spec]
    raise DataError(f"users: expected train, test or a list of ids, got {spec!r}")

"""Unseen-class masking end to end: the jobs give the model the pretrain label sets (mask_unseen)."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pandas as pd
import pytest
import torch
from conftest import compose

from actlab.families.continual import artifacts
from actlab.families.continual.data.user_streams import seen_labels
from actlab.families.continual.engine import stream_job, transfer_job
from actlab.results import layout
from actlab.results.store import iter_runs

USERS = ("68", "265")


@pytest.fixture
def one_verb_splits(egotoy_splits, tmp_path):
    """The egotoy splits, with a pretrain population that did one verb only.

    The pretrain split's user_agnostic sets keep verb v (the verb with most samples in both
    users' streams) and the actions with verb v: the streams then hold verb v only (unseen actions
    are dropped) and every verb but v is unseen.
    """
    splits = tmp_path / "splits"
    shutil.copytree(egotoy_splits, splits)
    doc = json.loads((splits / "pretrain.json").read_text())
    sets = doc["user_action_sets"]["user_agnostic"]
    train = json.loads((splits / "train.json").read_text())["users"]
    per_user = {u: Counter(r["verb_label"] for r in train[u] if f"{r['verb_label']}-{r['noun_label']}"
                           in sets["action_to_name_dict"]) for u in USERS}
    verb = max(per_user[USERS[0]], key=lambda v: min(per_user[u][v] for u in USERS))
    assert min(per_user[u][verb] for u in USERS) >= 4, per_user
    sets["verb_to_name_dict"] = {str(verb): sets["verb_to_name_dict"][str(verb)]}
    sets["action_to_name_dict"] = {a: d for a, d in sets["action_to_name_dict"].items()
                                   if a.split("-")[0] == str(verb)}
    (splits / "pretrain.json").write_text(json.dumps(doc))
    return splits, verb


@pytest.fixture
def biased(pretrained, one_verb_splits, tmp_path):
    """The test checkpoint with a verb-head bias of +10 for verb v + 1 (an unseen verb): unmasked, the
    model predicts v + 1 for every clip; masked, it can only predict v."""
    _, verb = one_verb_splits
    state = torch.load(pretrained, weights_only=False)
    state["model"]["verb_head.bias"][(verb + 1) % 8] += 10.0
    torch.save(state, tmp_path / "biased.pt")
    return tmp_path / "biased.pt"


def cfg_for(stream_overrides, splits, user, *extra):
    return compose("stream", [*stream_overrides, f"paths.splits={splits}", f"user={user}",
                              "experiment=egotoy_main", "method=frozen", "data.max_clips=24",
                              "wandb.mode=disabled", "submitted=20260101T000000Z", *extra])


def test_seen_labels_are_the_pretrain_populations(one_verb_splits, data_cfg):
    splits, verb = one_verb_splits
    cfg = data_cfg.copy()
    cfg.splits_dir = str(splits)
    verbs, nouns = seen_labels(cfg)
    assert verbs == {verb}
    doc = json.loads((splits / "pretrain.json").read_text())
    assert nouns == {int(n) for n in doc["user_action_sets"]["user_agnostic"]["noun_to_name_dict"]}


def test_online_and_hindsight_predictions_never_hit_an_unseen_class(stream_overrides, one_verb_splits, biased):
    splits, verb = one_verb_splits
    masked = stream_job.run(cfg_for(stream_overrides, splits, USERS[0], f"paths.pretrained={biased}"))
    predictions = pd.read_parquet(masked / artifacts.PREDICTIONS)
    assert len(predictions) >= 4 and set(predictions["verb"]) == {verb}
    assert set(predictions["pred_verb"]) == {verb}
    summary = json.loads((masked / layout.SUMMARY).read_text())
    assert summary["online/verb/top1"] == 1.0 and summary["hindsight/verb/top1"] == 1.0
    # the same model without the mask predicts the unseen verb v + 1: the check above is not vacuous
    plain = stream_job.run(cfg_for(stream_overrides, splits, USERS[0], f"paths.pretrained={biased}",
                                   "mask_unseen=false", "submitted=20260101T000001Z"))
    assert set(pd.read_parquet(plain / artifacts.PREDICTIONS)["pred_verb"]) == {(verb + 1) % 8}


@pytest.mark.parametrize("batch_models", [False, True])
def test_transfer_evaluation_is_masked(stream_overrides, one_verb_splits, biased, tmp_path, batch_models):
    splits, verb = one_verb_splits
    for user in USERS:
        stream_job.run(cfg_for(stream_overrides, splits, user, f"paths.pretrained={biased}"))
    cfg = compose("transfer", [f"paths.root={tmp_path}", f"paths.splits={splits}", "experiment=egotoy_main",
                               "mode=all", f"batch_models={str(batch_models).lower()}"])
    assert transfer_job.run(cfg) == 2            # the off-diagonal pairs
    for run in iter_runs(tmp_path / "results"):
        for path in (run.folder / "transfer").glob("*.json"):
            assert json.loads(path.read_text())["metrics"]["transfer/verb/top1"] == 1.0, path


def test_masking_with_unseen_samples_kept_is_refused(stream_overrides, egotoy_splits):
    # Upstream then also lets through the labels the stream has shown so far and the current
    # batch's: a per-batch set the stream loop does not provide yet (see docs/protocol.md).
    with pytest.raises(ValueError, match="mask_unseen.*drop_unseen"):
        stream_job.run(cfg_for(stream_overrides, egotoy_splits, USERS[0], "data.drop_unseen=false"))


def test_transfer_refuses_runs_that_predate_the_mask_setting(stream_overrides, one_verb_splits, tmp_path):
    splits, _ = one_verb_splits
    folder = stream_job.run(cfg_for(stream_overrides, splits, USERS[0]))
    config = folder / layout.CONFIG
    config.write_text("\n".join(line for line in config.read_text().splitlines()
                                if not line.startswith("mask_unseen:")) + "\n")
    next(folder.glob("transfer/*.json")).unlink()
    cfg = compose("transfer", [f"paths.root={tmp_path}", f"paths.splits={splits}", "experiment=egotoy_main",
                               "mode=diagonal"])
    with pytest.raises(ValueError, match="mask_unseen"):
        transfer_job.run(cfg)

"""The three back ends give the same records and the same table: results store, offline W&B
record logs (real offline runs written here by WandbMirror, one of them requeued), W&B API
(recorded objects). Listing the store reads identity, status and summary only, never an artifact."""
from __future__ import annotations

import builtins
import json
import os
from dataclasses import replace

import pandas as pd
import pytest

from actlab.identity import RunIdentity
from actlab.families.continual.aggregate import aggregate, default_table
from actlab.errors import DataError
from actlab.post.latex import render_table
from actlab.post.sources import load
from actlab.post.store_source import load_store
from actlab.post.wandb_api import load_api
from actlab.post.wandb_offline import iter_record_bytes, read_offline_runs
from actlab.results import layout
from runs import continual_mirror, continual_run

USERS = {"68": 0.1, "265": 0.2, "324": 0.35}


def summary(group_bonus: float, u: str) -> dict[str, float]:
    return {"online/action/balanced_top1": USERS[u] + group_bonus, "online/action/loss": 2.0 - group_bonus,
            "hindsight/action/balanced_top1": USERS[u] + 2 * group_bonus, "online/action/n_samples": 40.0}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    results, wandb_dir = root / "results", root / "wandb"
    for group, method, bonus, ref in (("e-frozen", "frozen", 0.0, ""), ("e-sgd", "finetune", 0.05, "e-frozen")):
        for u in USERS:
            ident = RunIdentity("e", group, u, 0, "20260101T000000Z", overrides={"method": method},
                                family="continual")
            s = summary(bonus, u)
            clips = [{"index": i, "clip_uid": f"c{i}", "video_uid": "v", "action_idx": 0, "start_sec": 0.0,
                      "end_sec": 2.0, "verb_label": 1, "noun_label": 2} for i in range(50)]
            continual_run(results, ident, method, s, f"sha{u}", reference_group=ref, clips=clips)
            if group == "e-sgd" and u == "68":
                # preempted first (requeue exit code), then resumed under the same id and finished
                continual_mirror(wandb_dir, ident, method, {"online/action/balanced_top1": 0.99}, "sha68",
                                 reference_group=ref, exit_code=124)
            continual_mirror(wandb_dir, ident, method, s, f"sha{u}", reference_group=ref)
    failed = RunIdentity("e", "e-sgd", "59", 0, "20260101T000000Z", overrides={"method": "finetune"},
                         family="continual")
    continual_run(results, failed, "finetune", {}, "sha59", reference_group="e-frozen", state="failed")
    continual_mirror(wandb_dir, failed, "finetune", None, "sha59", reference_group="e-frozen", exit_code=1)
    return results, wandb_dir


def canonical(runs):
    return sorted((r.run_id, r.experiment, r.group, r.unit, r.seed, r.submitted, r.family,
                   sorted(r.inputs.items()), sorted(r.labels.items()), sorted(r.overrides.items()),
                   sorted(r.summary.items()))
                  for r in runs.rows)


def test_offline_reader_merges_requeued_runs(sweep):
    _, wandb_dir = sweep
    runs = read_offline_runs(wandb_dir)
    assert len(runs) == 7                                     # 6 completed + 1 failed, each id once
    requeued = [r for r in runs.values() if len(r.files) == 2]
    assert len(requeued) == 1 and requeued[0].state == "finished"
    assert requeued[0].summary["online/action/balanced_top1"] == pytest.approx(0.15)  # latest wins


def test_store_and_offline_give_same_records_and_table(sweep):
    results, wandb_dir = sweep
    store = load("store", results=results)
    offline = load("wandb-offline", wandb_dir=wandb_dir, results=results)
    assert canonical(store) == canonical(offline)
    assert {r.labels["variant"] for r in store.rows} == {"frozen", "finetune"}
    assert {r.inputs["stream"] for r in store.rows} == {f"sha{u}" for u in USERS}
    assert [(r.group, r.unit, r.seed, r.state) for r in offline.incomplete] == [("e-sgd", "59", 0, "failed")]
    assert [(r.group, r.unit, r.seed, r.state) for r in store.incomplete] == [("e-sgd", "59", 0, "failed")]
    assert all(r.folder is not None for r in offline.rows)
    spec = replace(default_table(), precision=3)
    a, b = aggregate(store), aggregate(offline)
    pd.testing.assert_frame_equal(a.tidy, b.tidy)
    assert render_table(a.tidy, spec) == render_table(b.tidy, spec)
    assert a.info("e-sgd").failed == ("59",)


def test_listing_reads_no_artifact(sweep, monkeypatch):
    """What aggregation lists comes from identity.json, status.json and summary.json alone."""
    results, _ = sweep
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    runs = load_store(results)
    monkeypatch.undo()
    assert len(runs.rows) == 6 and len(runs.incomplete) == 1
    names = {os.path.basename(p) for p in opened}
    assert names == {layout.IDENTITY, layout.STATUS, layout.SUMMARY}, names      # the spy saw the reads
    assert not any(p.endswith("stream.json") for p in opened)


def test_corrupt_log_is_an_error(sweep, tmp_path):
    _, wandb_dir = sweep
    path = next(wandb_dir.rglob("run-*.wandb"))
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        list(iter_record_bytes(bad))
    bad.write_bytes(b"nope" * 4)
    with pytest.raises(DataError, match="not a W&B record log"):
        list(iter_record_bytes(bad))


class RecordedSummary:
    """As wandb.apis.public returns it: a mapping wrapper with `_json_dict`."""
    def __init__(self, d):
        self._json_dict = d


class RecordedRun:
    def __init__(self, d):
        self.id, self.group, self.config, self.state = d["id"], d["group"], d["config"], d["state"]
        self.summary = RecordedSummary(d["summary"])


class RecordedApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters):
        self.calls.append((path, filters))
        return [RecordedRun(r) for r in self._runs if r["group"] == filters["group"]]


def test_api_adapter_and_cache(sweep, tmp_path):
    results, wandb_dir = sweep
    recorded = []
    for r in read_offline_runs(wandb_dir).values():
        summary = r.summary | {"_runtime": 3, "_wandb": {"runtime": 3}}
        recorded.append({"id": r.id, "group": r.group, "config": r.config, "summary": summary, "state": r.state})
    api = RecordedApi(recorded)
    cache = tmp_path / "cache.json"
    got = load_api("me/actlab", ["e-frozen", "e-sgd"], cache=cache, api=api)
    assert api.calls == [("me/actlab", {"group": "e-frozen"}), ("me/actlab", {"group": "e-sgd"})]
    assert canonical(got) == canonical(load("store", results=results))
    assert json.loads(cache.read_text())["groups"] == ["e-frozen", "e-sgd"]
    again = load_api("me/actlab", ["e-sgd"], cache=cache, api=RecordedApi([]))   # served from the cache
    assert canonical(again) == canonical(got.select(group="e-sgd"))
    pd.testing.assert_frame_equal(aggregate(got).tidy, aggregate(load("store", results=results)).tidy)

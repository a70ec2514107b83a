"""Golden numbers of the continual aggregation: OAG, HAG (paired and upstream SE), transfer,
forgetting and decorrelated OAG, hand-computed on a small results folder written through RunStore."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from actlab.identity import RunIdentity
from actlab.families.continual.aggregate import aggregate, default_table, higher_is_better, transfer_matrix
from actlab.families.continual.metrics.balanced import running_balanced
from actlab.errors import DataError
from actlab.post.store_source import load_store
from actlab.post.tables import write_tables
from runs import continual_run

EXP = "exp"
FROZEN, FT = "exp-frozen", "exp-ft"


def ident(group: str, user: str, seed: int = 0, submitted: str = "20260101T000000Z") -> RunIdentity:
    return RunIdentity(EXP, group, user, seed, submitted)


def predictions(correct_action: list[int], reverse: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({"step": [0, 0, 0, 0, 1], "position": range(5), "index": [10, 11, 12, 13, 14],
                       "verb": [0, 0, 1, 1, 2], "noun": [0, 0, 0, 1, 1],
                       "correct_verb": correct_action, "correct_noun": correct_action,
                       "correct_action": correct_action})
    return df.iloc[::-1].reset_index(drop=True) if reverse else df


@pytest.fixture()
def results(tmp_path):
    root = tmp_path / "results"
    ref = {"68": (0.10, 3.0), "265": (0.20, 2.0), "324": (0.30, 1.0), "17": (0.5, 2.0)}
    for u, (bacc, loss) in ref.items():
        continual_run(root, ident(FROZEN, u), "frozen",
                      {"online/action/balanced_top1": bacc, "online/action/loss": loss}, f"sha{u}",
                      predictions=predictions([0, 0, 0, 0, 1], reverse=True) if u == "68" else None)
    ft = {"68": (0.30, 2.0, 0.40), "265": (0.25, 2.5, 0.30), "324": (0.50, 0.5, 0.80), "17": (0.9, 1.0, 0.9)}
    transfer = {
        "68": {"68": ("sha68", 2.5), "265": ("sha265", 2.4)},
        "265": {"68": ("sha68", 3.5), "265": ("sha265", 1.5)},
        "324": {"68": ("bad", 9.0)},
    }
    for u, (bacc, loss, hind) in ft.items():
        continual_run(root, ident(FT, u), "finetune",
                      {"online/action/balanced_top1": bacc, "online/action/loss": loss,
                       "hindsight/action/balanced_top1": hind},
                      "other" if u == "17" else f"sha{u}", reference_group=FROZEN,
                      predictions=predictions([1, 0, 1, 0, 1]) if u == "68" else None,
                      forgetting=forgetting_entries() if u == "68" else None,
                      transfer={j: {"stream_sha256": s, "metrics": {"transfer/action/loss": v}}
                                for j, (s, v) in transfer.get(u, {}).items()})
    # an older submission of the same (group, user, seed) is superseded by the later one
    continual_run(root, ident(FT, "68", submitted="20250101T000000Z"), "finetune",
                  {"online/action/balanced_top1": 0.99}, "sha68", reference_group=FROZEN)
    continual_run(root, ident(FT, "59"), "finetune", {}, "sha59", reference_group=FROZEN, state="failed")
    return root


def value(agg, group, metric, stat="mean"):
    t = agg.tidy
    row = t[(t.group == group) & (t.metric == metric) & (t.stat == stat)]
    assert len(row) == 1, (group, metric, stat, row)
    return float(row.value.iloc[0])


def test_oag_hag_golden(results):
    agg = aggregate(load_store(results))
    assert value(agg, FT, "oag/action/balanced_top1") == pytest.approx(0.15)
    assert value(agg, FT, "oag/action/balanced_top1", "se") == pytest.approx(0.05)
    assert value(agg, FT, "oag/action/balanced_top1", "n") == 3
    # loss gain = reference - method: 1.0, -0.5, 0.5
    assert value(agg, FT, "oag/action/loss") == pytest.approx(1 / 3)
    assert value(agg, FT, "hag/action/balanced_top1") == pytest.approx(0.3)
    assert value(agg, FT, "hag/action/balanced_top1", "se") == pytest.approx(0.2 / math.sqrt(3))
    assert value(agg, FT, "hag/action/balanced_top1", "se_upstream") == pytest.approx(math.sqrt(0.07 / 3))
    # finals are per user (the superseded submission of user 68 is not counted) and include 17
    assert value(agg, FT, "online/action/balanced_top1") == pytest.approx((0.30 + 0.25 + 0.50 + 0.9) / 4)


def test_missing_failed_mismatched_flagged_everywhere(results):
    agg = aggregate(load_store(results))
    info = agg.info(FT)
    assert info.reference == FROZEN
    assert info.failed == ("59",) and info.mismatched == ("17",) and info.missing == ()
    assert info.partial
    rows = agg.tidy[agg.tidy.group == FT]
    assert rows.partial.all() and (rows.failed_units == "59").all() and (rows.mismatched_units == "17").all()
    frozen = agg.info(FROZEN)
    assert frozen.missing == ("59",) and frozen.partial
    aggr = aggregate(load_store(results), expected_units=["68", "265", "324", "17"])
    assert aggr.info(FROZEN).missing == () and not aggr.info(FROZEN).partial


def test_transfer_matrix_golden(results):
    agg = aggregate(load_store(results))
    gain = transfer_matrix(agg, FT, "gain", "action", "loss")
    assert list(gain.index) == ["265", "68"] and list(gain.columns) == ["265", "68"]  # sorted as strings
    assert gain.loc["68", "68"] == pytest.approx(0.5) and gain.loc["68", "265"] == pytest.approx(-0.4)
    assert gain.loc["265", "68"] == pytest.approx(-0.5) and gain.loc["265", "265"] == pytest.approx(0.5)
    absolute = transfer_matrix(agg, FT, "abs", "action", "loss")
    assert absolute.loc["324", "68"] == 9.0            # absolute cell kept ...
    assert "324" not in gain.index                      # ... but no gain against another stream
    assert value(agg, FT, "transfer_gain_diag/action/loss") == pytest.approx(0.5)
    assert value(agg, FT, "transfer_gain_offdiag/action/loss") == pytest.approx(-0.45)
    assert value(agg, FT, "transfer_gain_offdiag/action/loss", "se") == pytest.approx(0.05)


def forgetting_entries() -> pd.DataFrame:
    """Action-loss re-exposure entries with gaps 0, 1, 10, 100 and one verb-acc entry."""
    return pd.DataFrame({"metric": ["loss"] * 4 + ["acc"], "task": ["action"] * 4 + ["verb"], "label": "a",
                         "step": [5, 6, 20, 200, 7], "prev_step": [5, 5, 10, 100, 6], "gap": [0, 1, 10, 100, 1],
                         "after": 1.0, "before": 1.0, "delta": [0.0, 0.1, 0.3, 0.5, 50.0],
                         "n_after": 1, "n_before": 1})


def test_forgetting_bins_golden(results):
    agg = aggregate(load_store(results))
    forgetting = agg.tables["forgetting"]
    bins = forgetting[(forgetting.group == FT) & (forgetting.metric == "loss")].reset_index(drop=True)
    assert set(forgetting[forgetting.group == FT].task) == {"action", "verb"}
    # non-zero gaps 1, 10, 100 -> log10 0, 1, 2: 10 bins of width .2 over [0, 2]; 1 -> bin 5 ([1, 1.2)),
    # 2 -> bin 9 (the last bin is closed); the zero-gap entry is not binned
    assert list(bins.n) == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert bins["bin_lo"][5] == pytest.approx(1.0)
    assert list(bins["mean"].dropna()) == pytest.approx([0.1, 0.3, 0.5])
    # pooled over all entries (zero gap included): mean (0 + .1 + .3 + .5) / 4 = .225; Pearson on the raw gap
    x, y = np.array([0, 1, 10, 100.0]), np.array([0.0, 0.1, 0.3, 0.5])
    r = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    assert value(agg, FT, "forgetting_pooled/action/loss", "mean") == pytest.approx(0.225)
    assert value(agg, FT, "forgetting_pooled/action/loss", "pearson") == pytest.approx(r)
    assert value(agg, FT, "forgetting_pooled/action/loss", "mean_nonzero_gap") == pytest.approx(0.3)
    assert not higher_is_better("forgetting_pooled/action/loss") and not higher_is_better("forgetting/verb/acc_mean")


def test_decorrelated_oag_golden(results):
    agg = aggregate(load_store(results))
    # action labels 0-0 0-0 1-0 1-1 2-1: sample 0 is decorrelated; no later sample changes verb
    # AND noun -> decorrelated = {0}: method 1 vs reference 0; correlated = {1..4}:
    # method (0+1+0+1)/4 - reference (0+0+0+1)/4 = 0.25
    assert value(agg, FT, "oag_decorrelated/action/top1") == pytest.approx(1.0)
    assert value(agg, FT, "oag_decorrelated/action/balanced_top1") == pytest.approx(1.0)
    assert value(agg, FT, "oag_correlated/action/top1") == pytest.approx(0.25)
    assert value(agg, FT, "oag_decorrelated/action/n_samples") == 1
    curves = agg.tables["oag_curves"]
    curve = curves[(curves.group == FT) & (curves.task == "action")]
    # running balanced accuracy, method [1,.5,.75,.5,.625] vs reference [0,0,0,0,.25]
    assert list(curve.oag) == pytest.approx([1.0, 0.5, 0.75, 0.5, 0.375])


def test_running_balanced_matches_definition():
    y = np.array(["a", "b", "a", "c", "a"])
    c = np.array([1, 0, 0, 1, 1])
    assert list(running_balanced(y, c)) == pytest.approx([1, 0.5, 0.25, 0.5, (2 / 3 + 0 + 1) / 3])


def test_direction():
    assert not higher_is_better("online/action/loss")
    assert higher_is_better("oag/action/loss") and higher_is_better("hindsight/verb/top1")
    assert higher_is_better("transfer_gain_diag/action/loss")


def test_reference_is_the_recorded_one_or_the_named_one(results):
    agg = aggregate(load_store(results))
    assert agg.info(FT).reference == FROZEN
    assert agg.info(FROZEN).reference == FROZEN            # the reference is its own baseline: zero gains
    assert value(agg, FROZEN, "oag/action/balanced_top1") == 0.0
    # a second reference group changes nothing: each group is paired with the one its runs recorded
    continual_run(results, ident("exp-frozen2", "68"), "frozen", {"online/action/balanced_top1": 0.9}, "sha68")
    again = aggregate(load_store(results))
    assert again.info(FT).reference == FROZEN and value(again, FT, "oag/action/balanced_top1") == pytest.approx(0.15)
    assert again.info("exp-frozen2").reference is None     # nobody refers to it: no gains
    assert not (again.tidy[again.tidy.group == "exp-frozen2"].metric.str.startswith("oag/")).any()
    # --reference-group wins over the recorded one, for every group
    named = aggregate(load_store(results), reference_group="exp-frozen2")
    assert {g.reference for g in named.groups} == {"exp-frozen2"}
    assert named.info(FT).mismatched == () and value(named, FT, "oag/action/balanced_top1", "n") == 1
    assert value(named, FT, "oag/action/balanced_top1") == pytest.approx(0.30 - 0.9)
    with pytest.raises(DataError, match="reference group 'nope' has no completed run"):
        aggregate(load_store(results), reference_group="nope")


def test_reference_must_be_unique_and_loaded(results):
    continual_run(results, ident(FT, "999"), "finetune", {"online/action/loss": 1.0}, "sha999",
                  reference_group="exp-frozen2")
    with pytest.raises(DataError, match=r"group exp-ft: its runs record several reference groups "
                                        r"\['exp-frozen', 'exp-frozen2'\]"):
        aggregate(load_store(results))
    assert aggregate(load_store(results), reference_group=FROZEN).info(FT).reference == FROZEN


def test_reference_group_not_loaded_is_named(results):
    runs = load_store(results).select(group=FT)
    with pytest.raises(DataError, match="group exp-ft: its reference group 'exp-frozen' has no completed run"):
        aggregate(runs)


def test_no_literal_reference_name_in_the_aggregation():
    from actlab.families.continual import aggregate as module

    assert "frozen" not in __import__("inspect").getsource(module)


def test_default_table_columns():
    spec = default_table()
    assert [c.metric for c in spec.columns] == [f"{p}/{t}/balanced_top1" for p in ("oag", "hag")
                                                for t in ("action", "verb", "noun")]
    assert spec.scale == 100.0 and spec.units == "users"


def test_tidy_outputs(results, tmp_path):
    agg = aggregate(load_store(results))
    paths = write_tables(agg, tmp_path / "out")
    back = pd.read_parquet(paths["aggregate_parquet"])
    assert len(back) == len(agg.tidy)
    assert not back.duplicated(["experiment", "group", "metric", "stat"]).any()
    assert pd.read_csv(paths["aggregate_csv"]).shape == back.shape
    assert set(paths) == {f"{n}_{k}" for n in ("aggregate", "per_unit", "transfer", "forgetting", "oag_curves")
                          for k in ("csv", "parquet")}
    # every tidy row carries the direction; gains of losses are higher-better, absolute losses not
    rows = back.drop_duplicates("metric").set_index("metric").higher_is_better
    assert rows["oag/action/loss"] and not rows["online/action/loss"] and rows["online/action/balanced_top1"]
    assert set(back[back.group == FT].label) == {"finetune"}

"""The generic aggregation layer (actlab.post.tables), family-agnostic: seeds averaged within a unit
before the SE over units, SE over seeds without units, latest resubmission, inputs that differ,
partial flags, labels, direction column and the written tables. Hand-computed values."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from actlab.errors import DataError
from actlab.identity import RunIdentity
from actlab.post.store_source import load_store
from actlab.post.tables import (TIDY_COLUMNS, aggregate_runs, default_direction, group_labels, mean_se,
                                plain_aggregate, write_tables)
from runs import write_run

STAMP = "20260101T000000Z"


def ident(group: str, unit: str | None, seed: int = 0, submitted: str = STAMP, overrides=None) -> RunIdentity:
    return RunIdentity("exp", group, unit, seed, submitted, overrides=overrides or {}, family="fam")


def cell(agg, group, metric, stat="mean"):
    t = agg.tidy
    row = t[(t.group == group) & (t.metric == metric) & (t.stat == stat)]
    assert len(row) == 1, (group, metric, stat, row)
    return row.iloc[0]


def test_mean_se_golden():
    # mean 3; squared deviations 4 + 1 + 0 + 9 = 14; var = 14/3; se = sqrt(14/3) / sqrt(4)
    mean, se = mean_se([1, 2, 3, 6])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2)
    assert mean_se([2.5])[0] == 2.5 and math.isnan(mean_se([2.5])[1])
    assert all(math.isnan(v) for v in mean_se([]))
    assert math.isnan(mean_se([1.0, float("nan")])[0])      # a missing unit is not averaged away


def test_seeds_are_averaged_within_a_unit_before_the_se_over_units(tmp_path):
    # unit a: seeds 0.2, 0.4 -> 0.3; unit b: 0.5; unit c: 0.6, 0.9, 0.9 -> 0.8
    for unit, values in {"a": [0.2, 0.4], "b": [0.5], "c": [0.6, 0.9, 0.9]}.items():
        for seed, v in enumerate(values):
            write_run(tmp_path, ident("g", unit, seed), summary={"val/top1": v}, inputs={"data": "d1"})
    agg = aggregate_runs(load_store(tmp_path))
    # units 0.3, 0.5, 0.8: mean 1.6/3, squared deviations sum 0.38/3, var 0.38/6, SE^2 = var/3
    assert cell(agg, "g", "val/top1").value == pytest.approx(1.6 / 3)        # not the 6-seed mean 3.5/6
    assert cell(agg, "g", "val/top1", "se").value == pytest.approx(math.sqrt(0.38 / 18))
    assert cell(agg, "g", "val/top1", "n").value == 3
    per_unit = agg.per_unit.set_index("unit").value
    assert per_unit.to_dict() == pytest.approx({"a": 0.3, "b": 0.5, "c": 0.8})
    assert agg.info("g").units == ("a", "b", "c") and not agg.info("g").partial


def test_without_units_the_se_is_over_seeds(tmp_path):
    for seed, (acc, loss) in enumerate([(0.1, 3.0), (0.2, 2.0), (0.6, 1.0)]):
        write_run(tmp_path, ident("g", None, seed), summary={"val/top1": acc, "train/loss": loss})
    agg = aggregate_runs(load_store(tmp_path))
    assert cell(agg, "g", "val/top1").value == pytest.approx(0.3)
    assert cell(agg, "g", "val/top1", "se").value == pytest.approx(math.sqrt(0.07 / 3))
    assert cell(agg, "g", "val/top1", "n").value == 3
    assert cell(agg, "g", "train/loss", "se").value == pytest.approx(math.sqrt(1.0 / 3))
    assert agg.info("g").units == ("seed 0", "seed 1", "seed 2")
    # the direction rule is carried on every row
    assert bool(cell(agg, "g", "val/top1").higher_is_better) and not bool(cell(agg, "g", "train/loss").higher_is_better)
    assert list(agg.tidy.columns) == list(TIDY_COLUMNS)


def test_latest_resubmission_wins(tmp_path):
    write_run(tmp_path, ident("g", "a", 0, "20260301T000000Z"), summary={"val/top1": 0.2})
    write_run(tmp_path, ident("g", "a", 0, "20250101T000000Z"), summary={"val/top1": 0.99})
    write_run(tmp_path, ident("g", "b", 0, "20240101T000000Z"), summary={"val/top1": 0.4})
    agg = aggregate_runs(load_store(tmp_path))
    assert cell(agg, "g", "val/top1").value == pytest.approx(0.3)
    assert cell(agg, "g", "val/top1", "n").value == 2


def test_runs_of_one_unit_with_other_inputs_are_refused(tmp_path):
    a = write_run(tmp_path, ident("g", "a", 0), summary={"val/top1": 0.2}, inputs={"stream": "s1", "weights": "w"})
    b = write_run(tmp_path, ident("g", "a", 1), summary={"val/top1": 0.4}, inputs={"stream": "s2", "weights": "w"})
    with pytest.raises(DataError, match=rf"group g, unit a: runs {a.name} and {b.name} read different input "
                                        r"'stream' \(s1 vs s2\)"):
        aggregate_runs(load_store(tmp_path))


def test_partial_groups_name_missing_and_failed_units(tmp_path):
    for unit in ("a", "b"):
        write_run(tmp_path, ident("g", unit), summary={"val/top1": 0.5})
    write_run(tmp_path, ident("g", "c"), state="failed")
    write_run(tmp_path, ident("h", "a"), summary={"val/top1": 0.5})
    write_run(tmp_path, ident("h", "b", 1), state="running")          # b has no completed seed 1
    write_run(tmp_path, ident("h", "b", 0), summary={"val/top1": 0.7})
    agg = aggregate_runs(load_store(tmp_path))
    g, h = agg.info("g"), agg.info("h")
    assert (g.failed, g.missing, g.partial) == (("c",), (), True)
    assert (h.failed, h.missing, h.partial) == (("b",), ("c",), True)
    rows = agg.tidy[agg.tidy.group == "h"]
    assert (rows.missing_units == "c").all() and (rows.failed_units == "b").all() and (rows.n_units == 2).all()
    full = aggregate_runs(load_store(tmp_path), expected_units=["a", "b"])
    assert full.info("g").missing == () and full.info("h").missing == ()


def test_group_labels_from_variant_and_overrides(tmp_path):
    write_run(tmp_path, ident("g1", "a", overrides={"method": "replay", "method.memory_size": 64}),
              labels={"variant": "replay"}, summary={"x/top1": 1.0})
    write_run(tmp_path, ident("g2", "a", overrides={"optim.lr": 0.01}), summary={"x/top1": 1.0})
    write_run(tmp_path, ident("g3", "a"), labels={"variant": "frozen"}, summary={"x/top1": 1.0})
    write_run(tmp_path, ident("g4", "a"), summary={"x/top1": 1.0})
    write_run(tmp_path, RunIdentity("other", "g5", "a", 0, STAMP, overrides={"optim.lr": 0.01}),
              summary={"x/top1": 1.0})
    labels = group_labels(load_store(tmp_path).rows)
    assert labels == {"g3": "frozen", "g4": "g4", "g2": "lr=0.01 [g2]", "g5": "lr=0.01 [g5]",
                      "g1": "replay (memory_size=64)"}
    assert list(labels) == ["g3", "g4", "g2", "g5", "g1"]                  # sorted by label
    agg = aggregate_runs(load_store(tmp_path))
    assert cell(agg, "g1", "x/top1").label == "replay (memory_size=64)"


def test_plain_aggregate_has_the_family_signature_and_no_reference(tmp_path):
    write_run(tmp_path, ident("g", None), summary={"val/top1": 0.5})
    agg = plain_aggregate(default_direction)(load_store(tmp_path), reference_group=None, expected_units=None)
    assert cell(agg, "g", "val/top1").value == 0.5 and math.isnan(cell(agg, "g", "val/top1", "se").value)
    with pytest.raises(DataError, match="compares no group against a reference"):
        plain_aggregate()(load_store(tmp_path), reference_group="g")


def test_default_direction():
    assert not default_direction("val/verb/loss") and not default_direction("train/loss")
    assert not default_direction("val/top1_error")
    assert default_direction("val/action/top1")


def test_write_tables_csv_and_parquet(tmp_path):
    write_run(tmp_path / "r", ident("g", "a"), summary={"val/top1": 0.5, "val/loss": 1.0})
    agg = aggregate_runs(load_store(tmp_path / "r"))
    agg.tables["extra"] = pd.DataFrame({"x": [1, 2]})
    paths = write_tables(agg, tmp_path / "out")
    assert set(paths) == {f"{n}_{k}" for n in ("aggregate", "per_unit", "extra") for k in ("csv", "parquet")}
    back = pd.read_parquet(paths["aggregate_parquet"])
    pd.testing.assert_frame_equal(back, agg.tidy)
    assert pd.read_csv(paths["aggregate_csv"]).shape == back.shape
    assert pd.read_parquet(paths["extra_parquet"]).x.tolist() == [1, 2]


def test_no_family_words_in_the_generic_layer():
    from actlab.post import tables

    source = __import__("inspect").getsource(tables).lower().replace("@dataclass(frozen=true)", "@dataclass")
    assert not [w for w in ("user", "frozen", "method") if w in source]

"""The zstal aggregation and tables: mean +- SE over class splits (seeds averaged within a split
first: the shared `aggregate_runs` with `split_id` as the unit), the metrics also under the data
set's kind (`thumos/map@0.30`, `anet/map@0.50`, ...) so THUMOS and ActivityNet columns never mix,
and the paper layout: rows = variants, one block per split ratio, THUMOS | ActivityNet columns,
with the report's reported rows (`--reported FILE`) in the block their label's "(75/25)" / "(50/50)"
tag names (docs/zstal.md).
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from actlab.errors import DataError
from actlab.post.latex import Column, ReportedRow, TableSpec, render_table
from actlab.post.tables import Aggregated, aggregate_runs

THUMOS_COLUMNS = tuple((f"thumos/map@{t}", f"TH {t[:3] if t.endswith('0') else t}") for t in
                       ("0.30", "0.40", "0.50", "0.60", "0.70")) + (("thumos/average_map", "TH Avg"),)
ANET_COLUMNS = (("anet/map@0.50", "AN 0.5"), ("anet/map@0.75", "AN 0.75"), ("anet/map@0.95", "AN 0.95"),
                ("anet/average_map", "AN Avg"))
SPLIT_KEYS = ("data", "split_ratio")    # what the paper layout puts in columns / blocks, not in row labels


def higher_is_better(metric: str) -> bool:
    return not metric.endswith("loss")


def aggregate(runs, reference_group=None, expected_units=None) -> Aggregated:
    if reference_group is not None:
        raise DataError(f"reference group {reference_group!r}: the zstal family compares no group against a reference")
    agg = aggregate_runs(runs, higher_is_better, expected_units)
    kinds = {r.group: r.labels.get("kind", "") for r in runs.rows}
    extra = agg.tidy[agg.tidy.metric.str.startswith("test/")].copy()
    extra["metric"] = [f"{kinds.get(g, 'unknown')}/{m.split('/', 1)[1]}" for g, m in zip(extra.group, extra.metric)]
    agg.tidy = pd.concat([agg.tidy, extra], ignore_index=True)
    agg.tables["paper"] = paper_frame(agg, runs)
    agg.tables["split0"] = split0_frame(runs)
    return agg


def split0_frame(runs) -> pd.DataFrame:
    """Class split 0 alone, SE over its seeds (each seed its own value): the second table."""
    from actlab.post.sources import Runs

    rows = [replace(r, unit=None) for r in runs.rows if r.unit == "0"]
    if not rows:
        return pd.DataFrame()
    kinds = {r.group: r.labels.get("kind", "") for r in rows}
    tidy = aggregate_runs(Runs(rows), higher_is_better).tidy
    tidy = tidy[tidy.metric.str.startswith("test/")].copy()
    tidy["metric"] = [f"{kinds.get(g, 'unknown')}/{m.split('/', 1)[1]}" for g, m in zip(tidy.group, tidy.metric)]
    return tidy.reset_index(drop=True)


def _variant(row) -> str:
    rest = {k: v for k, v in sorted(row.overrides.items()) if k not in SPLIT_KEYS}
    return ", ".join(f"{str(k).rsplit('.', 1)[-1]}={v}" for k, v in rest.items()) or "ours"


def paper_frame(agg: Aggregated, runs) -> pd.DataFrame:
    """Tidy rows of the paper layout: group = variant | ratio, THUMOS and ActivityNet metrics side by side."""
    meta = {}
    for r in runs.rows:
        meta.setdefault(r.group, (_variant(r), str(r.labels.get("split_ratio", ""))))
    wanted = {m for m, _ in THUMOS_COLUMNS + ANET_COLUMNS}
    rows = agg.tidy[agg.tidy.metric.isin(wanted)].copy()
    rows["ratio"] = [meta.get(g, ("", ""))[1] for g in rows.group]
    rows["label"] = [meta.get(g, (g, ""))[0] for g in rows.group]
    rows["group"] = [f"{lbl} | {ratio}" for lbl, ratio in zip(rows.label, rows.ratio)]
    return rows.reset_index(drop=True)


def default_table() -> TableSpec:
    return TableSpec(columns=tuple(Column(m, lbl) for m, lbl in THUMOS_COLUMNS + ANET_COLUMNS), scale=100.0,
                     precision=1, row_header="Setting", units="splits",
                     caption="Zero-shot temporal action localization: detection mAP in percent, mean and SE "
                             "over class splits (seeds averaged within a split)")


RATIO_TAG = re.compile(r"\s*\((\d+)/(\d+)\)\s*$")     # "EffPrompt (75/25)": a reported row's split ratio


def reported_ratio(row: ReportedRow) -> str | None:
    """The split ratio a reported row's label ends with ("... (75/25)" -> "75"); None: no tag."""
    m = RATIO_TAG.search(row.label)
    if m is None:
        return None
    if int(m.group(1)) + int(m.group(2)) != 100:
        raise DataError(f"reported row {row.label!r}: the split ratio tag must be (train/test) summing to 100")
    return m.group(1)


def block_rows(reported: tuple[ReportedRow, ...], ratio: str) -> tuple[ReportedRow, ...]:
    """The reported rows of one ratio block: those tagged with the ratio (the tag dropped from the label:
    the block's header names it) and the untagged ones (e.g. a supervised reference), in file order."""
    out = []
    for row in reported:
        tag = reported_ratio(row)
        if tag is None:
            out.append(row)
        elif tag == ratio:
            out.append(replace(row, label=RATIO_TAG.sub("", row.label)))
    return tuple(out)


def paper_tables(agg: Aggregated, out_dir: str | Path, spec: TableSpec | None = None) -> list[Path]:
    """The family's `tables` hook. paper_table.tex: one block per split ratio (75/25, 50/50), rows =
    variants, then the report's reported rows of that ratio (`block_rows`); split0_table.tex: class
    split 0 with SE over seeds (no reported rows: published numbers are means over splits). The
    report's precision applies to both."""
    from actlab.atomic import atomic_write_text

    frame = agg.tables.get("paper")
    if frame is None or frame.empty:
        return []
    precision = spec.precision if spec is not None else default_table().precision
    reported = spec.reported if spec is not None else ()
    columns = default_table().columns
    blocks = []
    for ratio in sorted(set(frame.ratio), key=lambda r: -int(r or 0)):
        part = frame[frame.ratio == ratio]
        split = f"{ratio}/{100 - int(ratio or 0)}"
        block = TableSpec(columns=columns, scale=100.0, precision=precision, units="splits",
                          row_header=f"Split {split}", reported=block_rows(reported, ratio),
                          caption=f"Zero-shot TAL, class split {split}: mAP in percent, mean and SE over splits")
        blocks.append(render_table(part, block))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(out / "paper_table.tex", "\n".join(blocks))]
    split0 = agg.tables.get("split0")
    if split0 is not None and not split0.empty:
        block = TableSpec(columns=columns, scale=100.0, precision=precision, units="",
                          caption="Zero-shot TAL on class split 0: mAP in percent, mean and SE over seeds")
        written.append(atomic_write_text(out / "split0_table.tex", render_table(split0, block)))
    return written

"""The continual family's aggregation, on the generic layer (actlab.post.tables): per-user finals,
OAG / HAG against the reference group, transfer matrices, forgetting bins, decorrelated OAG and
OAG along the stream.

Conventions (docs/protocol.md):
- Units are users; seeds and resubmissions as in actlab.post.tables (latest submission per
  (group, user, seed), mean over seeds first, mean +- SE over users).
- The reference of a group is `reference_group` when given (`--reference-group`), else the group
  its runs recorded (label `reference_group`); a group that others name as their reference is
  compared with itself (zero gains), so its table row reads as the baseline it is.
- Gains are paired by user and only for users whose stream manifest (input `stream`) is the
  reference's: other users are listed as `mismatched_users`, never paired.
- Gain sign: for accuracies gain = method - reference; for losses gain = reference - method, so
  every gain is higher-better (the paper's "loss-based gain").
- OAG_u = online(method, u) - online(ref, u); HAG_u = hindsight(method, u) - online(ref, u) (the
  reference's own online value, as upstream). For balanced_top1, `se_upstream` is the SE of HAG
  against the user-averaged (constant) reference, i.e. the SE of the method's values alone.
- Artifacts (artifacts.py) are read through `RunStore(folder).read(name)`, only for rows whose
  run folder is known (W&B-only rows contribute their summaries).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from actlab.errors import DataError
from actlab.families.continual import artifacts
from actlab.families.continual.artifacts import TASKS
from actlab.families.continual.metrics.balanced import balanced_accuracy, running_balanced
from actlab.families.continual.metrics.decorrelated import task_decorrelated_mask
from actlab.families.continual.metrics import forgetting as forg
from actlab.post import tables
from actlab.post.latex import Column, TableSpec
from actlab.post.sources import RunRow, Runs
from actlab.post.tables import Aggregated, GroupInfo
from actlab.results.store import RunStore

GAIN_STATS = ("top1", "top5", "balanced_top1", "loss")
FRAME_STATS = ("top1", "balanced_top1")      # stats computable from predictions.parquet

TRANSFER_COLUMNS = ["experiment", "group", "label", "kind", "task", "stat", "model_user", "stream_user", "value"]
FORGETTING_COLUMNS = ["experiment", "group", "label", "metric", "task", "bin", "bin_lo", "bin_hi", "n", "mean", "se"]
CURVE_COLUMNS = ["experiment", "group", "label", "user", "task", "position", "oag"]


def higher_is_better(metric: str) -> bool:
    """Direction of a tidy metric name: absolute losses are lower-better, everything else higher
    (gains of losses are sign-flipped, so they are higher-better too)."""
    phase, _, rest = metric.partition("/")
    if phase.startswith("forgetting"):
        return False              # re-exposure forgetting: delta > 0 is forgetting
    is_gain = phase in {"oag", "hag"} or phase.startswith(("oag_", "transfer_gain"))
    return is_gain or not rest.endswith("loss")


def default_table() -> TableSpec:
    """The report's table: OAG and HAG, balanced top-1, in percentage points."""
    columns = tuple(Column(f"{phase}/{task}/balanced_top1", f"{phase.upper()} {task}")
                    for phase in ("oag", "hag") for task in TASKS)
    return TableSpec(columns, precision=2, scale=100.0, row_header="Method", units="users",
                     caption="Balanced top-1 gains in percentage points against the reference network: "
                             "mean and SE over users")


def _sign(stat: str) -> float:
    return -1.0 if stat == "loss" else 1.0


def _stream(inputs: dict[str, str]) -> str | None:
    return inputs.get(artifacts.STREAM_INPUT)


# -- reference -------------------------------------------------------------------------------------
def references(runs: Runs, reference_group: str | None = None) -> dict[str, str | None]:
    """group -> the group it is compared against (None: none)."""
    groups = {g for _, g in tables.group_keys(runs)}
    completed = {r.group for r in runs.rows}
    if reference_group is not None:
        if reference_group not in completed:
            raise DataError(f"reference group {reference_group!r} has no completed run; "
                            f"groups with one: {sorted(completed)}")
        return {g: reference_group for g in groups}
    recorded: dict[str, set[str]] = {}
    for r in runs.rows:
        recorded.setdefault(r.group, set()).add(r.labels.get(artifacts.REFERENCE_GROUP, ""))
    out: dict[str, str | None] = {}
    for g in sorted(groups):
        names = recorded.get(g, set())
        if len(names) > 1:
            raise DataError(f"group {g}: its runs record several reference groups {sorted(names)}; "
                            f"name one with --reference-group")
        ref = next(iter(names), "")
        if ref and ref not in completed:
            raise DataError(f"group {g}: its reference group {ref!r} has no completed run "
                            f"(load its runs too, or name another with --reference-group)")
        out[g] = ref or None
    for ref in {v for v in out.values() if v}:
        if out.get(ref) is None:
            out[ref] = ref
    return out


# -- artifacts -------------------------------------------------------------------------------------
def read_predictions(store: RunStore) -> pd.DataFrame | None:
    """A run's predictions in stream order; None when the run has none (its user then counts
    only in the summary-based metrics, and the `n` of the decorrelated rows shows it)."""
    if not store.has(artifacts.PREDICTIONS):
        return None
    pred = store.read(artifacts.PREDICTIONS)
    return pred.sort_values("position", kind="stable").reset_index(drop=True)


def read_transfer(store: RunStore) -> list[dict]:
    """The run's transfer results, sorted by stream user file name."""
    out = []
    for path in sorted((store.folder / artifacts.TRANSFER_DIR).glob("*.json")):
        name = f"{artifacts.TRANSFER_DIR}/{path.name}"
        d = store.read(name)
        try:
            out.append({"model_user": str(d["model_user"]), "stream_user": str(d["stream_user"]),
                        "stream_sha256": str(d["stream_sha256"]), "metrics": dict(d["metrics"]),
                        "path": path})
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: not a transfer result ({type(e).__name__}: {e})") from e
    return out


def _split_metric(name: str) -> tuple[str, str] | None:
    """"transfer/action/loss" or "hindsight/action/loss" -> ("action", "loss")."""
    parts = name.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[1] in TASKS else None


# -- predictions-based metrics ---------------------------------------------------------------------
def _labels(pred: pd.DataFrame, task: str) -> np.ndarray:
    if task == "action":
        return (pred["verb"].astype(str) + "-" + pred["noun"].astype(str)).to_numpy()
    return pred[task].to_numpy()


def paired_predictions(method: pd.DataFrame, ref: pd.DataFrame, where: str) -> pd.DataFrame:
    """Method and reference predictions of the same stream side by side, joined on sample index."""
    if set(method["index"]) != set(ref["index"]) or len(method) != len(ref):
        raise DataError(f"{where}: method and reference predictions cover different samples")
    cols = ["index", "verb", "noun"] + [f"correct_{t}" for t in TASKS]
    m = method[["position"] + cols]
    r = ref[["index"] + [f"correct_{t}" for t in TASKS]]
    return m.merge(r, on="index", suffixes=("", "_ref"), validate="one_to_one")


def decorrelated_gains(pair: pd.DataFrame) -> dict[str, float]:
    """oag_{decorrelated,correlated}/<task>/{top1,balanced_top1,n_samples} for one user's paired stream."""
    out: dict[str, float] = {}
    for task in TASKS:
        y = _labels(pair, task)
        dec = task_decorrelated_mask(pair["verb"].tolist(), pair["noun"].tolist(), task)
        c_m = pair[f"correct_{task}"].to_numpy().astype(bool)
        c_r = pair[f"correct_{task}_ref"].to_numpy().astype(bool)
        for name, mask in (("oag_decorrelated", dec), ("oag_correlated", ~dec)):
            out[f"{name}/{task}/top1"] = (float(c_m[mask].mean() - c_r[mask].mean()) if mask.any()
                                          else math.nan)
            out[f"{name}/{task}/balanced_top1"] = (balanced_accuracy(y[mask], c_m[mask])
                                                   - balanced_accuracy(y[mask], c_r[mask]))
            out[f"{name}/{task}/n_samples"] = float(mask.sum())
    return out


def oag_curve(pair: pd.DataFrame, task: str) -> np.ndarray:
    """Running balanced top-1 of the method minus the reference's, at every stream position."""
    y = _labels(pair, task)
    return (running_balanced(y, pair[f"correct_{task}"].to_numpy())
            - running_balanced(y, pair[f"correct_{task}_ref"].to_numpy()))


# -- the aggregation -------------------------------------------------------------------------------
def aggregate(runs: Runs, reference_group: str | None = None, expected_units: list[str] | None = None,
              predictions: bool = True) -> Aggregated:
    """Aggregate every (experiment, group) in `runs`. `expected_units` (users) defaults to every
    user with a run (complete or not) in the group's experiment or its reference group.
    `predictions=False` skips the metrics read from predictions.parquet (decorrelated OAG, curves)."""
    labels = tables.group_labels(runs.rows)
    refs = references(runs, reference_group)
    by_group: dict[str, list[RunRow]] = {}
    for r in runs.rows:
        by_group.setdefault(r.group, []).append(r)
    units = {g: tables.runs_by_unit(rows) for g, rows in by_group.items()}
    values = {g: tables.unit_values(u) for g, u in units.items()}
    inputs = {g: tables.unit_inputs(u) for g, u in units.items()}

    groups: list[GroupInfo] = []
    tidy: list[dict] = []
    per_unit: list[dict] = []
    transfer: list[dict] = []
    forgetting: list[pd.DataFrame] = []
    curves: list[pd.DataFrame] = []
    for experiment, group in tables.group_keys(runs):
        ref = refs.get(group)
        own, ref_own = values.get(group, {}), values.get(ref, {}) if ref else {}
        own_in, ref_in = inputs.get(group, {}), inputs.get(ref, {}) if ref else {}
        expected = (set(expected_units) if expected_units is not None
                    else tables.started_units(runs, experiment, [ref] if ref else []))
        missing, failed = tables.unit_status(runs, group, own, expected)
        common = set(own) & set(ref_own)
        paired = sorted(u for u in common
                        if _stream(own_in[u]) is not None and _stream(own_in[u]) == _stream(ref_in[u]))
        mismatched = sorted(common - set(paired))
        info = GroupInfo(experiment, group, labels.get(group, group), ref, tuple(sorted(own)), missing, failed,
                         tuple(mismatched))
        groups.append(info)

        # user -> metric -> value, for every tidy metric of this group
        table: dict[str, dict[str, float]] = {u: dict(v) for u, v in own.items()}
        for u in paired:
            for task in TASKS:
                for stat in GAIN_STATS:
                    ref_v = ref_own[u].get(f"online/{task}/{stat}", math.nan)
                    for phase, gain in (("online", "oag"), ("hindsight", "hag")):
                        v = own[u].get(f"{phase}/{task}/{stat}")
                        if v is not None:
                            table[u][f"{gain}/{task}/{stat}"] = _sign(stat) * (v - ref_v)
        if predictions and ref:
            _predictions_metrics(info, units.get(group, {}), units[ref], paired, table, curves)

        t, p = tables.summarize(info, table, higher_is_better)
        tidy += _with_upstream_se(info, t, own, paired)
        per_unit += p

        t_rows = _transfer_rows(info, units.get(group, {}), ref_own, ref_in)
        transfer += t_rows
        tidy += _transfer_summary(info, t_rows)
        bins, rows = _forgetting(info, units.get(group, {}))
        forgetting += bins
        tidy += rows

    return Aggregated(groups, tables.tidy_frame(tidy), tables.per_unit_frame(per_unit), {
        "transfer": pd.DataFrame(transfer, columns=TRANSFER_COLUMNS),
        "forgetting": (pd.concat(forgetting, ignore_index=True) if forgetting
                       else pd.DataFrame(columns=FORGETTING_COLUMNS)),
        "oag_curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=CURVE_COLUMNS)})


def _with_upstream_se(info: GroupInfo, rows: list[dict], own: dict[str, dict[str, float]],
                      paired: list[str]) -> list[dict]:
    """Insert `se_upstream` after the `n` row of every hag/<task>/balanced_top1 metric."""
    out = []
    for row in rows:
        out.append(row)
        m = row["metric"]
        if row["stat"] == "n" and m.startswith("hag/") and m.endswith("/balanced_top1"):
            hindsight = m.replace("hag/", "hindsight/", 1)
            se = tables.mean_se(own[u].get(hindsight, math.nan) for u in paired)[1]
            out += tables.stat_rows(info, m, {"se_upstream": se}, higher_is_better(m))
    return out


def _predictions_metrics(info: GroupInfo, runs: dict[str, list[RunRow]], ref_runs: dict[str, list[RunRow]],
                         paired: list[str], table: dict[str, dict[str, float]], curves: list[pd.DataFrame]) -> None:
    for u in paired:
        ref_run = ref_runs[u][0]
        if ref_run.folder is None or any(r.folder is None for r in runs[u]):
            continue                  # W&B-only rows: predictions live in the results store
        ref_pred = read_predictions(RunStore(ref_run.folder))
        per_seed = []
        for r in runs[u]:
            pred = read_predictions(RunStore(r.folder))
            if pred is None or ref_pred is None:
                continue
            pair = paired_predictions(pred, ref_pred, f"{r.folder} vs {ref_run.folder}")
            per_seed.append(decorrelated_gains(pair))
            if r is runs[u][0]:
                for task in TASKS:
                    curves.append(pd.DataFrame({
                        "experiment": info.experiment, "group": info.group, "label": info.label,
                        "user": u, "task": task, "position": np.arange(len(pair)),
                        "oag": oag_curve(pair, task)}, columns=CURVE_COLUMNS))
        for k in (per_seed[0] if per_seed else []):
            table[u][k] = float(np.mean([s[k] for s in per_seed]))


def _transfer_rows(info: GroupInfo, runs: dict[str, list[RunRow]], ref_values: dict[str, dict[str, float]],
                   ref_inputs: dict[str, dict[str, str]]) -> list[dict]:
    out = []
    base = {"experiment": info.experiment, "group": info.group, "label": info.label}
    for user, user_runs in runs.items():
        run = user_runs[0]
        if run.folder is None:
            continue
        for t in read_transfer(RunStore(run.folder)):
            if t["model_user"] != user:
                raise DataError(f"{t['path']}: model_user {t['model_user']} in a run of user {user}")
            j = t["stream_user"]
            for name, v in t["metrics"].items():
                key = _split_metric(name)
                if key is None:
                    continue
                task, stat = key
                cell = base | {"task": task, "stat": stat, "model_user": user, "stream_user": j}
                out.append(cell | {"kind": "abs", "value": float(v)})
                # A gain needs the reference on the very same stream (same manifest hash).
                if (j in ref_values and _stream(ref_inputs[j]) == t["stream_sha256"]
                        and stat in GAIN_STATS):
                    ref_v = ref_values[j].get(f"online/{task}/{stat}", math.nan)
                    out.append(cell | {"kind": "gain", "value": _sign(stat) * (float(v) - ref_v)})
    return out


def _transfer_summary(info: GroupInfo, t_rows: list[dict]) -> list[dict]:
    if not t_rows:
        return []
    df = pd.DataFrame(t_rows)
    df = df[df.kind == "gain"]
    out = []
    for (task, stat), sub in df.groupby(["task", "stat"]):
        diag = sub.model_user == sub.stream_user
        for name, part in (("transfer_gain_diag", sub[diag]), ("transfer_gain_offdiag", sub[~diag])):
            if part.empty:
                continue
            metric = f"{name}/{task}/{stat}"
            out += tables.stat_rows(info, metric, tables.summary_stats(part.value), higher_is_better(metric))
    return out


def _forgetting(info: GroupInfo, runs: dict[str, list[RunRow]]) -> tuple[list[pd.DataFrame], list[dict]]:
    """Re-exposure forgetting entries of every run of the group pooled (all users and seeds
    together, as upstream's figure): per (metric, task) the 10 log10(gap) bins and tidy rows
    forgetting_pooled/<task>/<metric> (forg.pooled_stats)."""
    frames = []
    for user_runs in runs.values():
        for r in user_runs:
            if r.folder is not None and RunStore(r.folder).has(artifacts.FORGETTING):
                frame = RunStore(r.folder).read(artifacts.FORGETTING)
                missing = set(forg.ENTRY_COLUMNS) - set(frame.columns)
                if len(frame) and missing:
                    raise DataError(f"{r.folder / artifacts.FORGETTING}: lacks columns {sorted(missing)} "
                                    f"(written by an older actlab; rerun the stream job)")
                frames.append(frame)
    entries = forg.entries_frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
    bins, rows = [], []
    for task in TASKS:
        for metric in forg.METRICS:
            sel = forg.select(entries, metric, task)
            if sel.empty:
                continue
            b = forg.bin_by_log10_gap(sel)
            for k, v in reversed(list({"experiment": info.experiment, "group": info.group, "label": info.label,
                                       "metric": metric, "task": task}.items())):
                b.insert(0, k, v)
            bins.append(b)
            name = f"forgetting_pooled/{task}/{metric}"
            rows += tables.stat_rows(info, name, forg.pooled_stats(sel), higher_is_better(name))
    return bins, rows


# -- views -----------------------------------------------------------------------------------------
def transfer_matrix(agg: Aggregated, group: str, kind: str = "gain", task: str = "action",
                    stat: str = "loss") -> pd.DataFrame:
    """Model user x stream user (both sorted as strings) of one group's transfer cells."""
    t = agg.tables["transfer"]
    t = t[(t.group == group) & (t.kind == kind) & (t.task == task) & (t.stat == stat)]
    m = t.pivot(index="model_user", columns="stream_user", values="value")
    users = sorted(set(m.index) | set(m.columns))
    return m.reindex(index=users, columns=users)

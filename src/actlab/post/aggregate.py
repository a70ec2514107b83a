"""Runs -> per-user finals, OAG/HAG vs the frozen reference, transfer matrices, forgetting bins,
decorrelated OAG; tidy tables (one row per experiment x group x metric x stat).

Conventions (see /work/shared/reference/continual.md):
- A user's value is the mean over its seeds; of several runs with the same (group, user, seed)
  (resubmissions) the latest `submitted` counts.
- Gains are paired by user against the reference group (method "frozen" in the same experiment,
  else the only frozen group loaded, or `reference_group`) and only for users whose stream sha256
  is the reference's: other users are listed as `mismatched_users`, never paired.
- Gain sign: for accuracies gain = method - reference; for losses gain = reference - method, so
  every gain is higher-better (the paper's "loss-based gain").
- OAG_u = online(method, u) - online(ref, u); HAG_u = hindsight(method, u) - online(ref, u) (the
  frozen model's own online value, as upstream). For balanced_top1, `se_upstream` is the SE of
  HAG against the user-averaged (constant) reference, i.e. the SE of the method's values alone.
- Every tidy row carries `partial` and the missing / failed / mismatched user ids of its group.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from actlab.atomic import atomic_write, atomic_write_text
from actlab.metrics.forgetting import bin_by_log10_gap, pearson
from actlab.metrics.gains import decorrelated_mask, mean_se
from actlab.data.errors import DataError
from actlab.post.sources import RunRow, Runs
from actlab.results import layout

TASKS = layout.TASKS
GAIN_STATS = ("top1", "top5", "balanced_top1", "loss")
FRAME_STATS = ("top1", "balanced_top1")      # stats computable from predictions.parquet


def higher_is_better(metric: str) -> bool:
    """Direction of a tidy metric name: absolute losses are lower-better, everything else higher."""
    phase, _, rest = metric.partition("/")
    is_gain = phase in {"oag", "hag"} or phase.startswith(("oag_", "transfer_gain"))
    return is_gain or not rest.endswith("loss")


def _sign(stat: str) -> float:
    return -1.0 if stat == "loss" else 1.0


@dataclass(frozen=True)
class GroupInfo:
    experiment: str
    group: str
    method: str
    reference: str | None
    users: tuple[str, ...]           # completed users
    missing: tuple[str, ...]         # expected, but no run at all
    failed: tuple[str, ...]          # a run exists but did not complete
    mismatched: tuple[str, ...]      # stream sha256 differs from the reference's: not paired

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.failed or self.mismatched)


@dataclass
class Aggregate:
    groups: list[GroupInfo]
    tidy: pd.DataFrame               # experiment, group, method, metric, stat, value + flags
    per_user: pd.DataFrame           # experiment, group, method, user, metric, value
    transfer: pd.DataFrame           # experiment, group, method, kind, task, stat, model_user, stream_user, value
    forgetting: pd.DataFrame         # experiment, group, method, bin_lo, bin_hi, n, mean, se
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # group, method, user, position, task, oag

    def info(self, group: str) -> GroupInfo:
        for g in self.groups:
            if g.group == group:
                return g
        raise KeyError(f"no group {group!r}; groups: {[g.group for g in self.groups]}")

    def transfer_matrix(self, group: str, kind: str = "gain", task: str = "action",
                        stat: str = "loss") -> pd.DataFrame:
        t = self.transfer
        t = t[(t.group == group) & (t.kind == kind) & (t.task == task) & (t.stat == stat)]
        m = t.pivot(index="model_user", columns="stream_user", values="value")
        users = sorted(set(m.index) | set(m.columns))
        return m.reindex(index=users, columns=users)


# -- per-user values -----------------------------------------------------------------------------
def latest_per_seed(rows: list[RunRow]) -> dict[str, list[RunRow]]:
    """user -> one run per seed (the latest submission), sorted by seed."""
    best: dict[tuple[str, int], RunRow] = {}
    for r in rows:
        key = (r.user, r.seed)
        if key not in best or r.submitted > best[key].submitted:
            best[key] = r
    out: dict[str, list[RunRow]] = {}
    for (user, _), r in sorted(best.items()):
        out.setdefault(user, []).append(r)
    return out


def user_values(rows: list[RunRow]) -> dict[str, dict[str, float]]:
    """user -> metric -> mean over seeds (a metric missing in one seed's summary is nan there)."""
    out: dict[str, dict[str, float]] = {}
    for user, runs in latest_per_seed(rows).items():
        keys = sorted(set().union(*(r.summary for r in runs)))
        out[user] = {k: float(np.mean([r.summary.get(k, math.nan) for r in runs])) for k in keys}
    return out


def _user_sha(rows: list[RunRow]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.user, set()).add(r.stream_sha256)
    return out


# -- reference -------------------------------------------------------------------------------------
def find_reference(runs: Runs, experiment: str, reference_group: str | None = None) -> str | None:
    methods = {(r.experiment, r.group): r.method for r in runs.rows}
    if reference_group is not None:
        if reference_group not in {g for _, g in methods}:
            raise DataError(f"reference group {reference_group!r} has no completed run")
        return reference_group
    same = sorted({g for (e, g), m in methods.items() if m == "frozen" and e == experiment})
    anywhere = sorted({g for (_, g), m in methods.items() if m == "frozen"})
    for candidates in (same, anywhere):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise DataError(f"experiment {experiment}: several frozen groups {candidates}; "
                            f"name one with --reference-group")
    return None


# -- predictions-based metrics -------------------------------------------------------------------
def _labels(pred: pd.DataFrame, task: str) -> np.ndarray:
    if task == "action":
        return (pred["verb"].astype(str) + "-" + pred["noun"].astype(str)).to_numpy()
    return pred[task].to_numpy()


def balanced_accuracy(labels: np.ndarray, correct: np.ndarray) -> float:
    """Mean over the classes present of per-class accuracy; nan for no samples."""
    if len(labels) == 0:
        return math.nan
    df = pd.DataFrame({"y": labels, "c": correct.astype(float)})
    return float(df.groupby("y", sort=False)["c"].mean().mean())


def read_predictions(folder: Path) -> pd.DataFrame | None:
    """A run's predictions in stream order; None when the run has none (its user then counts
    only in the summary-based metrics, and the `n` of the decorrelated rows shows it)."""
    path = folder / layout.PREDICTIONS
    if not path.exists():
        return None
    return pd.read_parquet(path).sort_values("position", kind="stable").reset_index(drop=True)


def paired_predictions(method: pd.DataFrame, ref: pd.DataFrame, where: str) -> pd.DataFrame:
    """Method and reference predictions of the same stream side by side, joined on sample index."""
    if set(method["index"]) != set(ref["index"]) or len(method) != len(ref):
        raise DataError(f"{where}: method and reference predictions cover different samples")
    cols = ["index", "verb", "noun"] + [f"correct_{t}" for t in TASKS]
    m = method[["position"] + cols]
    r = ref[["index"] + [f"correct_{t}" for t in TASKS]]
    return m.merge(r, on="index", suffixes=("", "_ref"), validate="one_to_one")


def decorrelated_gains(pair: pd.DataFrame) -> dict[str, float]:
    """oag_{decorrelated,correlated}/<task>/{top1,balanced_top1} for one user's paired stream."""
    out: dict[str, float] = {}
    for task in TASKS:
        y = _labels(pair, task)
        dec = decorrelated_mask(list(y))
        c_m = pair[f"correct_{task}"].to_numpy().astype(bool)
        c_r = pair[f"correct_{task}_ref"].to_numpy().astype(bool)
        for name, mask in (("oag_decorrelated", dec), ("oag_correlated", ~dec)):
            out[f"{name}/{task}/top1"] = (float(c_m[mask].mean() - c_r[mask].mean()) if mask.any()
                                          else math.nan)
            out[f"{name}/{task}/balanced_top1"] = (balanced_accuracy(y[mask], c_m[mask])
                                                   - balanced_accuracy(y[mask], c_r[mask]))
            out[f"{name}/{task}/n_samples"] = float(mask.sum())
    return out


def running_balanced(labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy over samples 0..k (classes seen so far), for every k."""
    hits: dict[object, float] = {}
    seen: dict[object, int] = {}
    total, out = 0.0, np.empty(len(labels))
    for k, (y, c) in enumerate(zip(labels, correct)):
        if y in seen:
            total -= hits[y] / seen[y]
        hits[y] = hits.get(y, 0.0) + float(c)
        seen[y] = seen.get(y, 0) + 1
        total += hits[y] / seen[y]
        out[k] = total / len(seen)
    return out


def oag_curve(pair: pd.DataFrame, task: str) -> np.ndarray:
    y = _labels(pair, task)
    return (running_balanced(y, pair[f"correct_{task}"].to_numpy())
            - running_balanced(y, pair[f"correct_{task}_ref"].to_numpy()))


# -- transfer --------------------------------------------------------------------------------------
def read_transfer(folder: Path) -> list[dict]:
    out = []
    for path in sorted((folder / layout.TRANSFER_DIR).glob("*.json")):
        try:
            d = json.loads(path.read_text())
            out.append({"model_user": str(d["model_user"]), "stream_user": str(d["stream_user"]),
                        "stream_sha256": str(d["stream_sha256"]), "metrics": dict(d["metrics"]),
                        "path": path})
        except (json.JSONDecodeError, KeyError) as e:
            raise DataError(f"{path}: not a transfer result ({e})") from e
    return out


def _split_metric(name: str) -> tuple[str, str] | None:
    """"transfer/action/loss" or "hindsight/action/loss" -> ("action", "loss")."""
    parts = name.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[1] in TASKS else None


# -- the aggregation -------------------------------------------------------------------------------
def aggregate(runs: Runs, reference_group: str | None = None,
              expected_users: list[str] | None = None, predictions: bool = True) -> Aggregate:
    """Aggregate every (experiment, group) in `runs`. `expected_users` defaults to every user with
    a run (complete or not) in the group's experiment or its reference group."""
    groups: list[GroupInfo] = []
    tidy: list[dict] = []
    per_user: list[dict] = []
    transfer: list[dict] = []
    forgetting: list[pd.DataFrame] = []
    curves: list[pd.DataFrame] = []
    by_group: dict[str, list[RunRow]] = {}
    for r in runs.rows:
        by_group.setdefault(r.group, []).append(r)
    keys = sorted({(r.experiment, r.group) for r in runs.rows} | {(r.experiment, r.group) for r in runs.incomplete})
    for experiment, group in keys:
        rows = by_group.get(group, [])
        method = rows[0].method if rows else ""
        ref = find_reference(runs, experiment, reference_group)
        ref_rows = by_group.get(ref, []) if ref else []
        values = user_values(rows)
        ref_values = user_values(ref_rows)
        completed = set(values)
        started = {r.user for r in runs.rows + runs.incomplete
                   if r.experiment == experiment or (ref and r.group == ref)}
        expected = set(expected_users) if expected_users is not None else started
        failed = {r.user for r in runs.incomplete if r.group == group} - completed
        missing = expected - completed - failed
        sha, ref_sha = _user_sha(rows), _user_sha(ref_rows)
        paired = sorted(u for u in completed & set(ref_values) if len(sha[u] | ref_sha[u]) == 1)
        mismatched = sorted(u for u in completed & set(ref_values) if len(sha[u] | ref_sha[u]) > 1)
        info = GroupInfo(experiment, group, method, ref, tuple(sorted(completed)), tuple(sorted(missing)),
                         tuple(sorted(failed)), tuple(mismatched))
        groups.append(info)

        # user -> metric -> value, for every tidy metric of this group
        table: dict[str, dict[str, float]] = {u: dict(v) for u, v in values.items()}
        for u in paired:
            for task in TASKS:
                for stat in GAIN_STATS:
                    ref_v = ref_values[u].get(f"online/{task}/{stat}", math.nan)
                    for phase, gain in (("online", "oag"), ("hindsight", "hag")):
                        v = values[u].get(f"{phase}/{task}/{stat}")
                        if v is not None:
                            table[u][f"{gain}/{task}/{stat}"] = _sign(stat) * (v - ref_v)
        if predictions and ref:
            _predictions_metrics(info, rows, ref_rows, paired, table, curves)

        metrics = sorted(set().union(*table.values())) if table else []
        for u in sorted(table):
            for m in metrics:
                if m in table[u]:
                    per_user.append({"experiment": experiment, "group": group, "method": method,
                                     "user": u, "metric": m, "value": table[u][m]})
        for m in metrics:
            vals = [table[u][m] for u in sorted(table) if m in table[u]]
            mean, se = mean_se(vals)
            stats = {"mean": mean, "se": se, "n": float(len(vals))}
            if m.startswith("hag/") and m.endswith("/balanced_top1"):
                own = [values[u][m.replace("hag/", "hindsight/", 1)] for u in paired]
                stats["se_upstream"] = mean_se(own)[1]
            for stat, v in stats.items():
                tidy.append(_flags(info) | {"metric": m, "stat": stat, "value": v})

        t_rows = _transfer_rows(info, rows, ref_rows, ref_values)
        transfer.extend(t_rows)
        tidy.extend(_transfer_summary(info, t_rows))
        f = _forgetting(info, rows)
        if f is not None:
            bins, r, n = f
            forgetting.append(bins)
            for stat, v in (("r", r), ("n", float(n))):
                tidy.append(_flags(info) | {"metric": "forgetting/delta", "stat": stat, "value": v})

    tidy_cols = ["experiment", "group", "method", "metric", "stat", "value", "partial", "n_users",
                 "missing_users", "failed_users", "mismatched_users", "reference"]
    return Aggregate(
        groups, pd.DataFrame(tidy, columns=tidy_cols),
        pd.DataFrame(per_user, columns=["experiment", "group", "method", "user", "metric", "value"]),
        pd.DataFrame(transfer, columns=["experiment", "group", "method", "kind", "task", "stat",
                                        "model_user", "stream_user", "value"]),
        pd.concat(forgetting, ignore_index=True) if forgetting else pd.DataFrame(
            columns=["experiment", "group", "method", "bin_lo", "bin_hi", "n", "mean", "se"]),
        pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
            columns=["experiment", "group", "method", "user", "task", "position", "oag"]))


def _flags(info: GroupInfo) -> dict:
    return {"experiment": info.experiment, "group": info.group, "method": info.method,
            "partial": info.partial, "n_users": len(info.users),
            "missing_users": ",".join(info.missing), "failed_users": ",".join(info.failed),
            "mismatched_users": ",".join(info.mismatched), "reference": info.reference or ""}


def _predictions_metrics(info: GroupInfo, rows: list[RunRow], ref_rows: list[RunRow], paired: list[str],
                         table: dict[str, dict[str, float]], curves: list[pd.DataFrame]) -> None:
    runs, ref_runs = latest_per_seed(rows), latest_per_seed(ref_rows)
    for u in paired:
        ref_run = ref_runs[u][0]
        if ref_run.folder is None or any(r.folder is None for r in runs[u]):
            continue                  # W&B-only rows: predictions live in the results store
        ref_pred = read_predictions(ref_run.folder)
        per_seed = []
        for r in runs[u]:
            pred = read_predictions(r.folder)
            if pred is None or ref_pred is None:
                continue
            pair = paired_predictions(pred, ref_pred, f"{r.folder} vs {ref_run.folder}")
            per_seed.append(decorrelated_gains(pair))
            if r is runs[u][0]:
                for task in TASKS:
                    curves.append(pd.DataFrame({
                        "experiment": info.experiment, "group": info.group, "method": info.method,
                        "user": u, "task": task, "position": np.arange(len(pair)),
                        "oag": oag_curve(pair, task)}))
        for k in (per_seed[0] if per_seed else []):
            table[u][k] = float(np.mean([s[k] for s in per_seed]))


def _transfer_rows(info: GroupInfo, rows: list[RunRow], ref_rows: list[RunRow],
                   ref_values: dict[str, dict[str, float]]) -> list[dict]:
    ref_sha = {u: next(iter(s)) for u, s in _user_sha(ref_rows).items() if len(s) == 1}
    out = []
    base = {"experiment": info.experiment, "group": info.group, "method": info.method}
    for user, runs in latest_per_seed(rows).items():
        run = runs[0]
        if run.folder is None:
            continue
        for t in read_transfer(run.folder):
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
                if j in ref_values and ref_sha.get(j) == t["stream_sha256"] and stat in GAIN_STATS:
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
            mean, se = mean_se(part.value)
            for s, v in (("mean", mean), ("se", se), ("n", float(len(part)))):
                out.append(_flags(info) | {"metric": f"{name}/{task}/{stat}", "stat": s, "value": v})
    return out


def _forgetting(info: GroupInfo, rows: list[RunRow]) -> tuple[pd.DataFrame, float, int] | None:
    frames = []
    for runs in latest_per_seed(rows).values():
        for r in runs:
            path = r.folder / layout.FORGETTING if r.folder is not None else None
            if path is not None and path.exists():
                frames.append(pd.read_parquet(path))
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if events.empty or "gap" not in events:
        return None
    bins = bin_by_log10_gap(events)
    for k, v in reversed(list({"experiment": info.experiment, "group": info.group,
                               "method": info.method}.items())):
        bins.insert(0, k, v)
    return bins, pearson(events), len(events)


# -- outputs ---------------------------------------------------------------------------------------
def write_tables(agg: Aggregate, out_dir: str | Path) -> dict[str, Path]:
    """Tidy CSV + Parquet of the aggregate, per-user values, transfer cells and forgetting bins."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, df in (("aggregate", agg.tidy), ("per_user", agg.per_user), ("transfer", agg.transfer),
                     ("forgetting", agg.forgetting)):
        paths[f"{name}_csv"] = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
        paths[f"{name}_parquet"] = atomic_write(out / f"{name}.parquet",
                                                lambda p, df=df: df.to_parquet(p, index=False))
    return paths

"""Aggregating 1,000 run records into a table: from the results store vs from offline W&B logs.

Both sides hold the same 1,000 runs (10 groups x 100 users, one frozen). The store side is
written with actlab.post.synthetic.write_run; the W&B side is one `.wandb` record log per run,
framed here like wandb's writer (wandb.init per run would take minutes) and read back with the
same reader the tests check against real offline runs. Reported: seconds for each (median),
and the ratio offline / store.
"""
from __future__ import annotations

import json
import struct
import tempfile
import zlib
from pathlib import Path

from common import Record, interleaved, median

from actlab.identity import RunIdentity
from actlab.post.aggregate import aggregate
from actlab.post.latex import load_spec, render_table
from actlab.post.sources import load
from actlab.post.synthetic import write_run

N_GROUPS, N_USERS = 10, 100


def _frame(records: list[bytes]) -> bytes:
    """LevelDB-log framing with the W&B header (FULL/FIRST/MIDDLE/LAST chunks in 32 KiB blocks)."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for rec in records:
        rest, first = rec, True
        while True:
            space = 32768 - len(out) % 32768
            if space < 7:
                out += b"\0" * space
                continue
            part, rest = rest[:space - 7], rest[space - 7:]
            kind = (1 if first else 4) if not rest else (2 if first else 3)
            out += struct.pack("<IHB", zlib.crc32(part, zlib.crc32(bytes([kind]))), len(part), kind) + part
            first = False
            if not rest:
                break
    return bytes(out)


def _wandb_log(ident: RunIdentity, method: str, summary: dict[str, float], sha: str) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    run = pb.Record()
    run.run.run_id, run.run.run_group, run.run.project = ident.run_id, ident.group, "actlab"
    for k, v in {"identity": ident.to_dict(), "cfg": {"method": {"name": method}}, "stream_sha256": sha}.items():
        item = run.run.config.update.add()
        item.key, item.value_json = k, json.dumps(v)
    summ = pb.Record()
    for k, v in summary.items():
        item = summ.summary.update.add()
        item.key, item.value_json = k, json.dumps(v)
    end = pb.Record()
    end.exit.exit_code = 0
    return _frame([r.SerializeToString() for r in (run, summ, end)])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results, wandb_dir = Path(tmp) / "results", Path(tmp) / "wandb"
        for g in range(N_GROUPS):
            method = "frozen" if g == 0 else "finetune"
            for u in range(N_USERS):
                ident = RunIdentity("bench", f"bench-g{g}", str(u), 0, "20260101T000000Z")
                summary = {f"{phase}/{task}/{stat}": (u % 7 + g) / 10 for phase in ("online", "hindsight")
                           for task in ("action", "verb", "noun") for stat in ("top1", "top5", "balanced_top1", "loss")}
                write_run(results, ident, method, summary, f"sha{u}")
                path = wandb_dir / f"offline-run-20260101_000000-{ident.run_id}" / f"run-{ident.run_id}.wandb"
                path.parent.mkdir(parents=True)
                path.write_bytes(_wandb_log(ident, method, summary, f"sha{u}"))
        spec = load_spec(scale=100.0)

        def table(source: str) -> str:
            runs = load(source, results=results, wandb_dir=wandb_dir)
            assert len(runs.rows) == N_GROUPS * N_USERS
            return render_table(aggregate(runs, predictions=False).tidy, spec)

        assert table("store") == table("wandb-offline")
        times = interleaved({"store": lambda: table("store"), "offline": lambda: table("wandb-offline")},
                            repeats=3)
    store_s, offline_s = median(times["store"]), median(times["offline"])
    Record("aggregate", figures={"store_seconds_1000_runs": store_s, "offline_wandb_seconds_1000_runs": offline_s,
                                 "offline_over_store": offline_s / store_s},
           raw={k: v for k, v in times.items()},
           notes=[f"{N_GROUPS} groups x {N_USERS} users; load + aggregate + LaTeX render; same table from both"]).write()


if __name__ == "__main__":
    main()

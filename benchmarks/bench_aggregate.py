"""Aggregating 1,000 continual run records into a table, and listing them.

Both back ends hold the same 1,000 runs (10 groups x 100 users, one reference group). The store
side is written here through `RunStore.begin` / `finish`, as a stream job writes it, with a
realistic stream manifest artifact per run: 2,000 clips (`StreamClip.to_dict()` keys, UUID clip and
video ids), the size of a real Ego4D user stream (about 1,000-4,000 clips). The W&B side is one
`.wandb` record log per run with WandbMirror's config keys (identity, inputs, labels, cfg), framed
here like wandb's writer (wandb.init per run would take minutes) and read back with the reader
the tests check against real offline runs.

Reported:
- table: seconds (median) for load + aggregate + LaTeX render from each back end, and the ratio
  offline / store (the same table from both);
- listing: `load_store` (identity.json, status.json, summary.json per run) against a baseline that
  also parses every run's stream.json, as listing did when the stream hash lived only in the
  manifest; the ratio baseline / listing, and how many stream manifests listing opened (0).
"""
from __future__ import annotations

import builtins
import json
import os
import random
import struct
import tempfile
import uuid
import zlib
from pathlib import Path

from common import Record, interleaved, median

from actlab.atomic import read_json
from actlab.families.continual import artifacts
from actlab.families.continual.aggregate import aggregate, default_table
from actlab.families.continual.data.records import StreamClip
from actlab.identity import RunIdentity
from actlab.post.latex import render_table
from actlab.post.sources import load
from actlab.post.store_source import load_store
from actlab.results.store import Artifact, RunStore

N_GROUPS, N_USERS, N_CLIPS = 10, 100, 2000
STAMP = "20260101T000000Z"


def stream_manifest(user: int) -> dict:
    """A user's stream manifest as stream.json holds it: N_CLIPS clips from ~60 videos."""
    rng = random.Random(user)
    videos = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60)]
    clips, t = [], 0.0
    for i in range(N_CLIPS):
        start = round(t, 3)
        clips.append(StreamClip(index=i, clip_uid=str(uuid.UUID(int=rng.getrandbits(128))),
                                video_uid=videos[i * len(videos) // N_CLIPS], action_idx=rng.randrange(40),
                                start_sec=start, end_sec=round(start + 2.133, 3), verb_label=rng.randrange(115),
                                noun_label=rng.randrange(478)).to_dict())
        t += 2.133 + rng.random()
    return {"user": str(user), "sha256": f"sha{user}", "stats": {"n_clips": N_CLIPS}, "clips": clips}


def labels(g: int) -> dict[str, str]:
    return {artifacts.VARIANT: "frozen" if g == 0 else "finetune",
            artifacts.REFERENCE_GROUP: "" if g == 0 else "bench-g0"}


def inputs(u: int) -> dict[str, str]:
    return {artifacts.STREAM_INPUT: f"sha{u}", artifacts.PRETRAINED_INPUT: "sha-pretrained"}


def summary(g: int, u: int) -> dict[str, float]:
    return {f"{phase}/{task}/{stat}": (u % 7 + g) / 10 for phase in ("online", "hindsight")
            for task in artifacts.TASKS for stat in ("top1", "top5", "balanced_top1", "loss")}


def write_run(results: Path, ident: RunIdentity, g: int, u: int, manifest: dict) -> None:
    """A completed stream run through the results store, its manifest as an artifact."""
    store = RunStore.for_identity(ident, results)
    store.begin(ident, f"experiment: {ident.experiment}\n", inputs(u), labels(g))
    store.finish(summary(g, u), [Artifact(artifacts.STREAM, manifest)])


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


def _wandb_log(ident: RunIdentity, g: int, u: int) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    run = pb.Record()
    run.run.run_id, run.run.run_group, run.run.project = ident.run_id, ident.group, "actlab"
    config = {"identity": ident.to_dict(), "inputs": inputs(u), "labels": labels(g),
              "cfg": {"method": {"name": labels(g)[artifacts.VARIANT]}}}
    for k, v in config.items():
        item = run.run.config.update.add()
        item.key, item.value_json = k, json.dumps(v)
    summ = pb.Record()
    for k, v in summary(g, u).items():
        item = summ.summary.update.add()
        item.key, item.value_json = k, json.dumps(v)
    end = pb.Record()
    end.exit.exit_code = 0
    return _frame([r.SerializeToString() for r in (run, summ, end)])


def count_manifest_opens(results: Path) -> int:
    """How many stream.json files one `load_store` opens."""
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(artifacts.STREAM):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    builtins.open = spy
    try:
        load_store(results)
    finally:
        builtins.open = real_open
    return len(opened)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results, wandb_dir = Path(tmp) / "results", Path(tmp) / "wandb"
        for u in range(N_USERS):
            manifest = stream_manifest(u)
            for g in range(N_GROUPS):
                ident = RunIdentity("bench", f"bench-g{g}", str(u), 0, STAMP, family="continual")
                write_run(results, ident, g, u, manifest)
                path = wandb_dir / f"offline-run-20260101_000000-{ident.run_id}" / f"run-{ident.run_id}.wandb"
                path.parent.mkdir(parents=True)
                path.write_bytes(_wandb_log(ident, g, u))
        manifest_bytes = sum(p.stat().st_size for p in results.glob(f"*/*/*/{artifacts.STREAM}"))
        spec = default_table()

        def table(source: str) -> str:
            runs = load(source, results=results, wandb_dir=wandb_dir)
            assert len(runs.rows) == N_GROUPS * N_USERS
            return render_table(aggregate(runs, predictions=False).tidy, spec)

        def listing() -> None:
            assert len(load_store(results).rows) == N_GROUPS * N_USERS

        def listing_with_manifests() -> None:
            runs = load_store(results)
            for r in runs.rows:
                assert read_json(r.folder / artifacts.STREAM)["sha256"] == r.inputs[artifacts.STREAM_INPUT]

        assert table("store") == table("wandb-offline")
        opens = count_manifest_opens(results)
        times = interleaved({"store": lambda: table("store"), "offline": lambda: table("wandb-offline"),
                             "listing": listing, "listing_parsing_manifests": listing_with_manifests},
                            repeats=3)
    med = {k: median(v) for k, v in times.items()}
    Record("aggregate", figures={
        "store_seconds_1000_runs": med["store"], "offline_wandb_seconds_1000_runs": med["offline"],
        "offline_over_store": med["offline"] / med["store"],
        "listing_seconds_1000_runs": med["listing"],
        "listing_parsing_manifests_seconds_1000_runs": med["listing_parsing_manifests"],
        "manifest_parsing_over_listing": med["listing_parsing_manifests"] / med["listing"],
        "stream_manifests_opened_by_listing": opens},
        raw={"seconds": times, "stream_json_mib_total": manifest_bytes / 2 ** 20,
             "clips_per_manifest": N_CLIPS},
        notes=[f"{N_GROUPS} groups x {N_USERS} users; table = load + aggregate + LaTeX render, same table "
               f"from both back ends",
               f"listing = load_store; baseline = load_store + parsing every stream.json "
               f"({N_CLIPS} clips each, {manifest_bytes / 2 ** 20:.0f} MiB in all, in the page cache)"]).write()


if __name__ == "__main__":
    main()

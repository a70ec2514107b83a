"""egotoy: a small, deterministic egocentric data set in the Ego4D v1 file formats.

Layout written by `generate(out, seed, scale)`:
  out/ego4d.json                         {"videos": [{video_uid, fb_participant_id, origin_video_id, ...}]}
  out/annotations/fho_lta_{train,val}.json {"version", "split", "clips": [LTA rows]} (80/20 by clip)
  out/clips/<clip_uid>.mp4               64x64, 15 fps, yuv420p
  out/taxonomy.json                      {"verbs": [...], "nouns": [...]}

Why adaptation pays off on it (the properties the engine's sanity checks rely on):
- every user has a home (background texture, lighting gain, colour cast, object size, where objects
  are held) that a population model has not seen;
- every user has habits: a few preferred actions and a sticky Markov chain over them, so a stream is
  label-correlated and its label prior differs from the population's and from other users';
- pool users' habits are drawn mostly from actions the pretrain population performs, so the
  unseen-action filter drops only a few samples.
The six pool users (68, 265, 324, 59, 23, 17) have the most clip minutes, in that order; pretrain
users (101..110) and one video without participant id have fewer.
A video's `origin_video_id` names its recording in recording order (`egotoy_u68_video00`, ...),
the order the habit chain ran in; its video_uid is random, so a stream sorted by video_uid
instead of origin visits some user's videos in another order (tests/test_data_egotoy.py).
"""
from __future__ import annotations

import hashlib
import math
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from actlab.atomic import atomic_write_json
from actlab.families.continual.data.egotoy_render import (COLOURS, FPS, NOUNS, SHAPES, SIZE, VERBS, ClipJob, Home,
                                       Segment, pick_codec, render_clip)

VERSION = "egotoy-v1"
CLIP_SECONDS = 8 * 2 / FPS            # one stream sample of the egotoy data config
POOL_USERS = (68, 265, 324, 59, 23, 17)       # descending clip minutes
POOL_SAMPLES = (200, 190, 180, 170, 160, 150)  # stream samples at scale 1
PRETRAIN_USERS = tuple(range(101, 111))
PRETRAIN_SAMPLES = (118, 146)                  # range per pretrain user at scale 1
NULL_SAMPLES = 135
SAMPLES_PER_CLIP = 20
STAY = (0.4, 0.6)          # self-transition probability of the habit chain
EXPLORE = 0.04             # chance of an action outside the habits
OVERLAP = 0.05             # chance an annotation overlaps the previous one
VAL_FRACTION = 0.2
N_ACTIONS = len(VERBS) * len(NOUNS)


@dataclass
class _Clip:
    clip_uid: str
    duration: float                        # seconds, a whole number of frames
    annotations: list[dict[str, Any]]      # action_idx, start, end, verb, noun
    segments: list[Segment]
    seed: int
    parent_start: float = 0.0


@dataclass
class _Video:
    video_uid: str
    origin_video_id: str                   # the recording's id, numbered in recording order
    user: int | None
    gain: float
    texture_phase: float
    clips: list[_Clip] = field(default_factory=list)
    duration: float = 0.0


@dataclass
class _User:
    user: int | None
    home: Home
    actions: np.ndarray      # preferred action ids (verb * len(NOUNS) + noun)
    weights: np.ndarray
    stay: float
    videos: list[_Video] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return sum(c.duration for v in self.videos for c in v.clips) / 60.0


def _uid(seed: int, *parts: Any) -> str:
    """Ego4D-style uuid, a pure function of the seed and the item's position."""
    digest = hashlib.sha256(repr((VERSION, seed) + parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _r3(x: float) -> float:
    return float(round(x, 3))


def _home(rng: np.random.Generator) -> Home:
    return Home(
        background=tuple(float(x) for x in rng.uniform(0.12, 0.75, 3)),
        texture_amp=float(rng.uniform(0.05, 0.3)),
        texture_freq=float(rng.uniform(0.1, 0.6)),
        texture_angle=float(rng.uniform(0, np.pi)),
        vignette_centre=tuple(float(x) for x in rng.uniform(0, SIZE, 2)),
        gain=float(rng.uniform(0.75, 1.2)),
        cast=tuple(float(x) for x in rng.uniform(0.75, 1.25, 3)),
        object_size=float(rng.uniform(0.75, 1.3)),
        position=tuple(float(x) for x in rng.uniform(24, 40, 2)),
        noise=float(rng.uniform(0.02, 0.06)),
    )


def _user(user: int | None, rng: np.random.Generator, candidates: np.ndarray, p: np.ndarray,
          n_pref: tuple[int, int]) -> _User:
    k = int(rng.integers(n_pref[0], n_pref[1] + 1))
    actions = rng.choice(candidates, size=min(k, len(candidates)), replace=False, p=p)
    return _User(user=user, home=_home(rng), actions=actions,
                 weights=rng.dirichlet(np.full(len(actions), 2.0)),
                 stay=float(rng.uniform(*STAY)))


def _next_action(u: _User, current: int | None, rng: np.random.Generator) -> int:
    if rng.random() < EXPLORE:
        return int(rng.integers(N_ACTIONS))
    if current is not None and current in u.actions and rng.random() < u.stay:
        return current
    w = np.where(u.actions == current, 0.0, u.weights)
    return int(rng.choice(u.actions, p=w / w.sum()))


def _plan_clip(u: _User, budget: int, rng: np.random.Generator, state: list[int | None],
               seed: int, clip_uid: str) -> _Clip:
    """Annotations packed with short idle gaps until `budget` stream samples are reached.

    `state` carries the habit chain's current action across clips of one user.
    """
    annotations: list[dict[str, Any]] = []
    segments: list[Segment] = []
    cursor = _r3(rng.uniform(0.2, 0.8))     # end of the last rendered action
    last_start = cursor                     # start of the annotation that set the cursor
    samples = 0
    while samples < budget:
        action = _next_action(u, state[0], rng)
        state[0] = action
        verb, noun = divmod(action, len(NOUNS))
        k = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
        duration = k * CLIP_SECONDS + rng.uniform(0.05, 0.35)
        render_from = None
        if annotations and rng.random() < OVERLAP:
            span = cursor - last_start
            if rng.random() < 0.6:   # starts inside the previous action, ends after it
                start = _r3(cursor - rng.uniform(0.15, 0.6) * min(span, duration))
                end = _r3(start + duration)
                render_from = cursor
                samples += int((end - cursor) // CLIP_SECONDS)
            else:                    # entirely inside the previous action (a concurrent one)
                start = _r3(last_start + rng.uniform(0.0, 0.3) * span)
                end = _r3(min(start + duration, cursor))
        else:
            start = _r3(cursor + rng.uniform(0.1, 0.6))
            end = _r3(start + duration)
            render_from = start
            samples += k
        if render_from is not None:
            f0, f1 = math.ceil(render_from * FPS - 1e-6), math.ceil(end * FPS - 1e-6)
            jitter = rng.normal(0.0, 4.0, 2)
            segments.append(Segment(start_frame=f0, end_frame=f1, verb=verb, noun=noun,
                                    cx=float(u.home.position[0] + jitter[0]),
                                    cy=float(u.home.position[1] + jitter[1]),
                                    phase=float(rng.uniform())))
            last_start, cursor = start, end
        annotations.append({"action_idx": len(annotations), "start": start, "end": end,
                            "verb": verb, "noun": noun})
    n_frames = math.ceil((cursor + rng.uniform(0.2, 0.6)) * FPS)
    return _Clip(clip_uid=clip_uid, duration=n_frames / FPS, annotations=annotations,
                 segments=segments, seed=seed)


def _plan_videos(u: _User, target: int, n_videos: int, rng: np.random.Generator, seed: int,
                 tag: str) -> None:
    n_clips = max(1, round(target / (n_videos * SAMPLES_PER_CLIP)))
    budget = max(1, round(target / (n_videos * n_clips)))
    state: list[int | None] = [None]
    for vi in range(n_videos):
        video = _Video(video_uid=_uid(seed, tag, vi), origin_video_id=f"egotoy_{tag}_video{vi:02d}",
                       user=u.user, gain=float(rng.uniform(0.85, 1.15)),
                       texture_phase=float(rng.uniform(0, 2 * np.pi)))
        for ci in range(n_clips):
            clip_seed = int.from_bytes(hashlib.sha256(repr((seed, tag, vi, ci)).encode()).digest()[:4],
                                       "little")
            video.clips.append(_plan_clip(u, budget, rng, state, clip_seed,
                                          _uid(seed, tag, vi, ci)))
        u.videos.append(video)


def _pad_minutes(u: _User, minutes: float) -> None:
    """Idle tail on the user's last clip so the user has at least `minutes` of clips.

    Keeps the published ranking (pool users first, in their order) at every scale without
    changing any annotation.
    """
    missing = minutes * 60.0 - u.minutes * 60.0
    if missing > 0:
        last = u.videos[-1].clips[-1]
        last.duration = math.ceil((last.duration + missing) * FPS) / FPS


def _layout(u: _User, rng: np.random.Generator) -> None:
    """Place clips inside their parent video, with unannotated footage between them."""
    for video in u.videos:
        t = rng.uniform(5.0, 30.0)
        for clip in video.clips:
            clip.parent_start = _r3(t)
            t = clip.parent_start + clip.duration + rng.uniform(10.0, 60.0)
        video.duration = _r3(t + rng.uniform(5.0, 30.0))


def plan(seed: int = 0, scale: float = 1.0) -> list[_User]:
    """All users with their videos, clips and annotations (no pixels)."""
    if scale <= 0:
        raise ValueError(f"egotoy scale must be > 0, got {scale}")
    rng = np.random.default_rng([seed, 0])
    popularity = rng.dirichlet(np.full(N_ACTIONS, 0.6))
    all_actions = np.arange(N_ACTIONS)
    users: list[_User] = []
    for i, uid in enumerate(PRETRAIN_USERS + (None,)):
        urng = np.random.default_rng([seed, 1, i])
        u = _user(uid, urng, all_actions, popularity, (14, 20))
        target = NULL_SAMPLES if uid is None else int(urng.integers(*PRETRAIN_SAMPLES))
        _plan_videos(u, max(2, round(target * scale)), 1 if uid is None else int(urng.integers(1, 3)),
                     urng, seed, f"u{uid}")
        users.append(u)
    counts = np.zeros(N_ACTIONS)
    for u in users:
        for v in u.videos:
            for c in v.clips:
                for a in c.annotations:
                    counts[a["verb"] * len(NOUNS) + a["noun"]] += 1
    # Pool habits: actions the population performs (weighted by how often), and for some users
    # one rare habit the population never shows, so the unseen-action filter has work to do.
    seen, unseen = np.flatnonzero(counts), np.flatnonzero(counts == 0)
    seen_p = np.sqrt(counts[seen]) / np.sqrt(counts[seen]).sum()
    for i, (uid, target) in enumerate(zip(POOL_USERS, POOL_SAMPLES)):
        urng = np.random.default_rng([seed, 2, i])
        u = _user(uid, urng, seen, seen_p, (6, 10))
        if len(unseen) and urng.random() < 0.5:
            u.actions = np.append(u.actions, urng.choice(unseen))
            u.weights = np.append(0.96 * u.weights, 0.04)
        _plan_videos(u, max(4, round(target * scale)), int(urng.integers(2, 4)), urng, seed,
                     f"u{uid}")
        users.append(u)
    floor = max(u.minutes for u in users if u.user not in POOL_USERS)
    for u in reversed([u for u in users if u.user in POOL_USERS]):
        floor = floor * 1.02 + 0.05
        _pad_minutes(u, floor)
        floor = u.minutes
    lrng = np.random.default_rng([seed, 3])
    for u in users:
        _layout(u, lrng)
    return users


def _rows(users: list[_User], seed: int) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng([seed, 4])
    train, val = [], []
    for u in users:
        for v in u.videos:
            for c in v.clips:
                rows = []
                for a in c.annotations:
                    rows.append({
                        "clip_uid": c.clip_uid, "video_uid": v.video_uid,
                        "clip_parent_start_sec": _r3(c.parent_start),
                        "clip_parent_end_sec": _r3(c.parent_start + c.duration),
                        "action_idx": a["action_idx"],
                        "action_clip_start_sec": a["start"], "action_clip_end_sec": a["end"],
                        "verb": VERBS[a["verb"]], "verb_label": a["verb"],
                        "noun": NOUNS[a["noun"]], "noun_label": a["noun"],
                    })
                (val if rng.random() < VAL_FRACTION else train).extend(rows)
    return train, val


def _jobs(users: list[_User], clips_dir: Path, codec: str) -> list[ClipJob]:
    jobs = []
    for u in users:
        for v in u.videos:
            for c in v.clips:
                jobs.append(ClipJob(path=str(clips_dir / f"{c.clip_uid}.mp4"), seed=c.seed,
                                    n_frames=round(c.duration * FPS), home=u.home,
                                    video_gain=v.gain, texture_phase=v.texture_phase,
                                    segments=tuple(c.segments), codec=codec))
    return jobs


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def generate(out: str | os.PathLike, seed: int = 0, scale: float = 1.0,
             workers: int | None = None) -> Path:
    """Write the egotoy data set under `out` and return `out`. JSON bytes depend only on seed/scale."""
    out = Path(out)
    users = plan(seed, scale)
    train, val = _rows(users, seed)
    jobs = _jobs(users, out / "clips", pick_codec())
    (out / "clips").mkdir(parents=True, exist_ok=True)
    workers = workers or default_workers()
    # Biggest clips first so the pool's tail is short; each clip has its own seed, so the
    # output does not depend on the schedule.
    order = sorted(jobs, key=lambda j: -j.n_frames)
    if workers == 1:
        for job in order:
            render_clip(job)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            list(ex.map(render_clip, order, chunksize=4))
    videos = [{"video_uid": v.video_uid, "fb_participant_id": u.user, "duration_sec": v.duration,
               "video_source": "egotoy", "origin_video_id": v.origin_video_id}
              for u in users for v in u.videos]
    atomic_write_json(out / "taxonomy.json", {"verbs": list(VERBS), "nouns": list(NOUNS),
                                              "shapes": list(SHAPES), "colours": list(COLOURS)})
    atomic_write_json(out / "ego4d.json", {"version": VERSION, "videos": videos})
    for name, rows in (("train", train), ("val", val)):
        atomic_write_json(out / "annotations" / f"fho_lta_{name}.json",
                          {"version": VERSION, "split": name, "clips": rows})
    return out


def summary(users: list[_User]) -> dict[str, Any]:
    """Per-user stream samples (first-come-first-served overlap policy) and clip minutes."""
    per_user = {}
    for u in users:
        n = 0
        for v in u.videos:
            for c in v.clips:
                cursor = -1.0
                for a in c.annotations:
                    start = max(a["start"], cursor)
                    if a["end"] > cursor:
                        n += int((a["end"] - start) // CLIP_SECONDS)
                        cursor = a["end"]
        per_user[str(u.user)] = {"samples": n, "minutes": round(u.minutes, 2),
                                 "videos": len(u.videos),
                                 "clips": sum(len(v.clips) for v in u.videos)}
    return per_user

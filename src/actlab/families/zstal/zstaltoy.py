"""The embedded data set `zstaltoy`: a THUMOS-like and an ActivityNet-like set in the real formats,
with a seeded random-init tiny CLIP and features made in its text-embedding space.

Background snippets are noise; inside an instance of class c a snippet is
normalize(a f + b t_c + noise), f a shared actionness direction and t_c the tiny CLIP's embedding of
c's prompt. So proposals learnt on seen classes transfer to unseen ones (f), and CLIP similarity
names the unseen ones (t_c). f is orthogonal to every class embedding of its data set (the CLIP
embedding is 64-d, more than the 40 ANet-like classes): a random f has f.t_c' of the order of the
gaps between the prompts' embeddings, which tilted the similarity towards some classes and put the
oracle (GT segments, CLIP-named) below 0.8 on some splits (docs/zstal.md). Known defects of the real
THUMOS test set are reproduced: one test video without features and one segment past its video's
end, both on the toy's exclusion list.

    generate(out, seed)   # idempotent: skips when out/.generated says the same seed and version
"""
from __future__ import annotations

import json
import math
import shutil
import string
from pathlib import Path

import numpy as np
import torch

from actlab.atomic import atomic_write_json, atomic_write_text
from actlab.families.zstal.text import PROMPT, class_phrase

VERSION = 2        # 2: embed 64, f orthogonal to the class embeddings (docs/zstal.md)
MARKER = ".generated"
CLIP_NAME = "zstaltoy-tiny-clip"
CLIP_CFG = {"embed_dim": 64,      # > the 40 ANet-like classes: room for f orthogonal to every t_c
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
THUMOS_CLASSES = ("BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
                  "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
                  "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus",
                  "VolleyballSpiking")
ANET_CLASSES = tuple(f"{v} {n}" for v in ("Playing", "Washing", "Painting", "Cleaning", "Riding")
                     for n in ("guitar", "dishes", "fence", "windows", "horse", "bike", "drums", "car"))
THUMOS_EXCLUDE = ("video_test_0000005", "video_test_0000009")   # no features; segment past the end
FPS, THUMOS_STRIDE, ANET_STRIDE = 30.0, 8, 16
ACTION, CLASS, NOISE = 1.0, 1.0, 0.12     # a, b and the per-dimension noise of an instance snippet


def paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {"clip_config": out / "clip" / f"{CLIP_NAME}.json", "clip_weights": out / "clip" / "tiny_clip.pt",
            "splits": out / "splits", "thumos": out / "thumos", "anet": out / "anet"}


def is_complete(out: str | Path, seed: int) -> bool:
    marker = Path(out) / MARKER
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()) == {"seed": seed, "version": VERSION}


def generate(out: str | Path, seed: int = 0) -> Path:
    """Write the whole set under `out` (skipped when it is already there, complete, for this seed)."""
    out = Path(out)
    if is_complete(out, seed):
        return out
    if out.exists():
        shutil.rmtree(out)       # a partial or other-seed set: its files cannot be reused piecemeal
    p = paths(out)
    rng = np.random.default_rng(seed)
    tower = _tiny_clip(p["clip_config"], p["clip_weights"], seed)
    _thumos(p["thumos"], tower, rng)
    _anet(p["anet"], tower, rng)
    for ratio in (75, 50):
        for d, classes in (("THUMOS14", THUMOS_CLASSES), ("ActivityNet", ANET_CLASSES)):
            _splits(p["splits"], ratio, d, classes, rng)
    atomic_write_json(out / MARKER, {"seed": seed, "version": VERSION})
    return out


def _tiny_clip(config: Path, weights: Path, seed: int):
    import open_clip

    from actlab.families.zstal.text import load_clip

    config.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config, CLIP_CFG)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**CLIP_CFG)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))     # as trained CLIP: exp(logit_scale) = 100
    torch.save(model.state_dict(), weights)
    return load_clip(CLIP_NAME, weights, config)


def _embed(tower, classes) -> np.ndarray:
    return tower.encode([PROMPT.format(name=class_phrase(c)) for c in classes]).numpy()


def _snippets(rng, t: int, segments: list[tuple[int, int, np.ndarray | None]], action: np.ndarray) -> np.ndarray:
    """[t, D] features: noise, and normalize(a f + b t_c + noise) inside each (start, end, t_c)."""
    d = len(action)
    x = rng.normal(size=(t, d))
    for s, e, tc in segments:
        signal = ACTION * action + (CLASS * tc if tc is not None else 0.0)
        x[s:e] = signal + NOISE * rng.normal(size=(e - s, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _place(rng, t: int, lengths: list[int]) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) snippet spans of the given lengths, with gaps, in order."""
    free = t - sum(lengths)
    cuts = np.sort(rng.integers(0, max(1, free), size=len(lengths)))
    spans, pos, prev = [], 0, 0
    for cut, n in zip(cuts, lengths):
        pos += cut - prev
        prev = cut
        spans.append((pos, pos + n))
        pos += n
    return spans


def _action_direction(rng, text: np.ndarray) -> np.ndarray:
    """A random unit direction orthogonal to every class embedding of the data set: actionness carries
    no class identity, so f.t_c does not tilt the CLIP similarity towards some classes."""
    if len(text) >= text.shape[1]:
        raise ValueError(f"{len(text)} classes in a {text.shape[1]}-d embedding: no direction orthogonal to all")
    f = rng.normal(size=text.shape[1])
    basis = np.linalg.qr(text.T.astype(np.float64))[0]          # [D, C], orthonormal, span of the t_c
    f = f - basis @ (basis.T @ f)
    return f / np.linalg.norm(f)


def _thumos(root: Path, tower, rng) -> None:
    text = _embed(tower, THUMOS_CLASSES)
    action = _action_direction(rng, text)
    (root / "features").mkdir(parents=True, exist_ok=True)
    sec = THUMOS_STRIDE / FPS
    database, info, perm = {}, {}, rng.permutation(len(THUMOS_CLASSES))
    for subset, prefix in (("val", "video_validation"), ("test", "video_test")):
        for i in range(40):
            name = f"{prefix}_{i + 1:07d}"
            t = int(rng.integers(200, 1001))
            label = THUMOS_CLASSES[perm[i % len(perm)]]
            n = int(rng.integers(2, 2 + t // 150))
            lengths = [int(rng.integers(math.ceil(1 / sec), int(15 / sec) + 1)) for _ in range(n)]
            spans = _place(rng, t, lengths)
            labels = [label if rng.random() > 0.1 else "Ambiguous" for _ in spans]
            segments = [(s, e, None if lb == "Ambiguous" else text[THUMOS_CLASSES.index(lb)])
                        for (s, e), lb in zip(spans, labels)]
            anns = [{"segment": [round(s * sec, 2), round(e * sec, 2)], "label": lb} for (s, e), lb in zip(spans, labels)]
            duration = round(t * sec, 2)
            if name == THUMOS_EXCLUDE[1]:
                anns.append({"segment": [round(duration - 5, 2), round(duration + 20, 2)], "label": label})
            database[name] = {"subset": subset, "fps": FPS, "duration": duration, "annotations": anns}
            info[name] = {"frame_length": t * THUMOS_STRIDE, "frame_duration": duration, "snippet_length": t,
                          "snippet_duration": round(sec, 6), "video_fps": FPS}
            if name != THUMOS_EXCLUDE[0]:
                np.save(root / "features" / f"{name}.npy", _snippets(rng, t, segments, action))
    atomic_write_json(root / "annotations.json", {"classes": list(THUMOS_CLASSES), "database": database})
    atomic_write_json(root / "info.json", info)
    _descriptions(root / "descriptions.json", THUMOS_CLASSES)


def _anet(root: Path, tower, rng) -> None:
    text = _embed(tower, ANET_CLASSES)
    action = _action_direction(rng, text)
    (root / "features").mkdir(parents=True, exist_ok=True)
    sec = ANET_STRIDE / FPS
    database, info, perm = {}, {}, rng.permutation(len(ANET_CLASSES))
    alphabet = np.array(list(string.ascii_letters + string.digits + "-_"))
    for subset, count in (("training", 80), ("validation", 60)):
        for i in range(count):
            vid = "".join(rng.choice(alphabet, size=11))
            t = int(rng.integers(40, 226))
            label = ANET_CLASSES[perm[i % len(perm)]]
            n = int(rng.integers(1, 4))
            lengths = [int(rng.integers(max(2, t // 8), max(3, t // (n + 1)))) for _ in range(n)]
            spans = _place(rng, t, lengths)
            duration = round(t * sec, 2)
            anns = [{"segment": [round(s * sec, 2), round(e * sec, 2)], "label": label} for s, e in spans]
            database[vid] = {"subset": subset, "duration": duration, "resolution": "640x360",
                             "url": f"https://www.youtube.com/watch?v={vid}", "annotations": anns}
            info[f"v_{vid}"] = {"frame_length": t * ANET_STRIDE, "frame_duration": duration, "snippet_length": t,
                                "snippet_duration": round(sec, 6), "video_fps": FPS}
            tc = text[ANET_CLASSES.index(label)]
            np.save(root / "features" / f"v_{vid}.npy", _snippets(rng, t, [(s, e, tc) for s, e in spans], action))
    taxonomy = [{"nodeId": i, "nodeName": c, "parentId": None, "parentName": None} for i, c in enumerate(ANET_CLASSES)]
    atomic_write_json(root / "annotations.json", {"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database})
    atomic_write_json(root / "info.json", info)
    _descriptions(root / "descriptions.json", ANET_CLASSES)


def _descriptions(path: Path, classes) -> None:
    atomic_write_json(path, {c: {"idx": i, "Elaboration": {"Description": [
        f"{class_phrase(c)} begins", f"a person is {class_phrase(c)}", f"{class_phrase(c)} ends"]}}
        for i, c in enumerate(classes)})


def _splits(root: Path, ratio: int, dataset: str, classes, rng) -> None:
    from actlab.families.zstal.data import split_path

    n_train = round(len(classes) * ratio / 100)
    for k in range(10):
        perm = [classes[i] for i in rng.permutation(len(classes))]
        for part, names in (("train", perm[:n_train]), ("test", perm[n_train:])):
            path = split_path(root, ratio, dataset, part, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            # odd splits without the final newline, as some real lists are: readers must strip
            atomic_write_text(path, "\n".join(names) + ("\n" if k % 2 == 0 else ""))

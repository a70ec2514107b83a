"""`ntutoy`: a small, seeded stand-in for NTU RGB+D in the pyskl 2D pickle layout.

10 NTU actions (two of them two-person), performers P001-P008 (P001, P002, P004, P005, P008 are
xsub-train), cameras C001-C003 at yaws -45, 0 and +45 degrees (C001 is xview-val), replications
R001-R002, T in 30-60. A class is a parametric motion of a COCO-17 skeleton whose class-specific
pose is held for much of the clip; a performer has its own limb lengths (+-8 % overall, +-4 % per
limb) and speed (0.9-1.1); every clip has a facing jitter (+-8 degrees), 3D and pixel noise, scores
in 0.3-1 (mostly high) and some missing joints ((0, 0), score 0). Writes `<out>/ntutoy_hrnet.pkl`
and `<out>/labels.csv`.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from actlab.atomic import atomic_write_bytes

# (NTU A-number, class name, persons)
ACTIONS = ((8, "sitting down", 1), (9, "standing up (from sitting position)", 1), (10, "clapping", 1),
           (23, "hand waving", 1), (24, "kicking something", 1), (27, "jump up", 1), (35, "nod head/bow", 1),
           (38, "salute", 1), (52, "pushing other person", 2), (58, "handshaking", 2))
PERFORMERS = tuple(range(1, 9))
XSUB_TRAIN = (1, 2, 4, 5, 8)
CAMERAS = {1: -45.0, 2: 0.0, 3: 45.0}    # camera -> yaw in degrees
REPLICATIONS = (1, 2)
IMG_SHAPE = (1080, 1920)
PICKLE, LABELS = "ntutoy_hrnet.pkl", "labels.csv"


def _direction(elev: np.ndarray, azim: np.ndarray, side: float) -> np.ndarray:
    """Unit limb direction: elevation 0 = down, pi = up; azimuth 0 = forward (-z), pi/2 = outwards."""
    return np.stack([side * np.sin(elev) * np.sin(azim), -np.cos(elev), -np.sin(elev) * np.cos(azim)], -1)


def _bump(p: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * np.clip(p, 0, 1)) ** 2


def _ramp(p: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(p, 0, 1))


def _person(action: int, role: int, p: np.ndarray, limbs: dict[str, float]) -> np.ndarray:
    """Joints [T, 17, 3] (metres, body frame: x = the person's left, y up, -z forward)."""
    t = len(p)
    ua, fa, th, sh, to, sw, hw, hd = (limbs[k] for k in ("ua", "fa", "th", "sh", "to", "sw", "hw", "hd"))
    zero = np.zeros(t)
    # defaults: standing, arms hanging slightly out
    arm = {s: (np.full(t, 0.15), np.full(t, 1.4), np.full(t, 0.15), np.full(t, 1.4)) for s in (1, -1)}
    knee = {1: zero.copy(), -1: zero.copy()}     # thigh flexion forward (rad)
    shin = {1: zero.copy(), -1: zero.copy()}     # extra shin flexion backwards (rad)
    lift, bow, push_z = zero.copy(), zero.copy(), zero.copy()
    cyc = 2 * np.pi * p
    # sitting down and standing up differ in more than their temporal order (docs/skel.md, Data): the
    # seated pose is held at the end of one and the start of the other, and the arms do different things
    if action == 8:      # sitting down: hands reach back for the seat, then rest on the thighs (60 % seated)
        d = _ramp(p * 2.8 - 0.15)
        k = 1.4 * d
        knee = {1: k, -1: k}
        shin = {1: -k, -1: -k}
        bow = 0.3 * d
        back, lap = _bump(p * 2.8 - 0.15), d * d
        arm = {s: (0.15 + 0.5 * back + 0.4 * lap, 1.4 + 1.2 * back - 1.2 * lap, 0.15 + 0.5 * back + 1.3 * lap,
                   1.4 + 1.2 * back - 1.2 * lap) for s in (1, -1)}
    elif action == 9:    # standing up: leans well forward, pushes off the knees, arms swing forward as it rises
        u = _ramp(p * 2.8 - 0.5)
        k = 1.4 * (1 - u)
        knee = {1: k, -1: k}
        shin = {1: -k, -1: -k}
        bow = 0.3 * (1 - u) + 0.5 * _bump(p * 2.8 - 0.3)
        push, swing = 1 - _ramp(p * 2.8 - 0.2), _bump(p * 2.0 - 0.8)
        arm = {s: (0.15 + 0.8 * push + 1.2 * swing, 1.4 - 1.3 * push - 1.3 * swing,
                   0.15 + 0.8 * push + 1.2 * swing, 1.4 - 1.3 * push - 1.3 * swing) for s in (1, -1)}
    elif action == 10:   # clapping: forearms swing inwards and out
        s = 0.5 + 0.5 * np.sin(3 * cyc)
        arm = {side: (np.full(t, 0.9), np.full(t, 0.3), np.full(t, 1.5), -0.6 + 0.9 * s) for side in (1, -1)}
    elif action == 23:   # hand waving, right hand up
        arm[-1] = (np.full(t, 2.2), np.full(t, 1.5), 2.7 + 0.4 * np.sin(3 * cyc), 1.2 + 0.6 * np.sin(3 * cyc))
    elif action == 24:   # kicking with the right leg: a large swing forward, the foot up near hip height
        k = 1.5 * _bump(p * 1.6 - 0.2)
        knee[-1] = k
        shin[-1] = -0.8 * _bump(p * 1.6 - 0.1) + 0.5 * k
    elif action == 27:   # jump up: crouch, then lift
        c = _bump(p * 2)
        knee = {1: 0.7 * c, -1: 0.7 * c}
        shin = {1: -1.4 * c, -1: -1.4 * c}
        lift = 0.35 * _bump(p * 2 - 0.7)
        arm = {side: (0.3 + 2.0 * _bump(p * 2 - 0.6), np.full(t, 0.3), 0.3 + 2.0 * _bump(p * 2 - 0.6),
                      np.full(t, 0.3)) for side in (1, -1)}
    elif action == 35:   # a deep bow, held through the middle of the clip
        bow = 1.15 * np.clip(1.8 * _bump(p * 1.1 - 0.05), 0, 1)
    elif action == 38:   # salute: right hand to the forehead, the elbow raised to the side, held
        r = _ramp(p * 4)
        arm[-1] = (0.15 + 1.55 * r, np.full(t, 1.4), 0.15 + 2.45 * r, 1.4 - 2.9 * r)
    elif action == 52:   # pushing: role 0 thrusts both arms, role 1 is pushed back
        if role == 0:    # arms thrust and held, a step forward
            e = 0.15 + 1.45 * _ramp(p * 3 - 0.3)
            arm = {side: (e, np.full(t, 0.1), e, np.full(t, 0.1)) for side in (1, -1)}
            push_z = -0.3 * _ramp(p * 3 - 0.6)
        else:            # driven back a metre, leaning back, arms flung out
            push_z = 1.0 * _ramp(p * 2 - 0.6)
            bow = -0.4 * _ramp(p * 2 - 0.6)
            f = _ramp(p * 2 - 0.6)
            arm = {side: (0.15 + 1.2 * f, np.full(t, 1.4), 0.15 + 1.4 * f, np.full(t, 1.4)) for side in (1, -1)}
    elif action == 58:   # handshaking: right arms forward, shaking up and down
        r = _ramp(p * 4)
        arm[-1] = (0.15 + 1.2 * r + 0.3 * r * np.sin(4 * cyc), 1.4 - 1.4 * r,
                   0.15 + 1.2 * r + 0.3 * r * np.sin(4 * cyc), 1.4 - 1.5 * r)
    joints = np.zeros((t, 17, 3))
    hip_y = th + sh
    for side, (hip, kn, an) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):
        joints[:, hip] = [side * hw, hip_y, 0]
        joints[:, kn] = joints[:, hip] + th * _direction(knee[side], zero, side)
        joints[:, an] = joints[:, kn] + sh * _direction(knee[side] + shin[side], zero, side)
    # upper body: rotated forward by `bow` about the hip centre
    upper = np.zeros((t, 17, 3))
    for side, (s_, e_, w_) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
        e1, a1, e2, a2 = arm[side]
        upper[:, s_] = [side * sw, to, 0]
        upper[:, e_] = upper[:, s_] + ua * _direction(e1, a1, side)
        upper[:, w_] = upper[:, e_] + fa * _direction(e2, a2, side)
    upper[:, 0] = [0, to + hd, -0.1]
    upper[:, 1], upper[:, 2] = [0.03, to + hd + 0.03, -0.08], [-0.03, to + hd + 0.03, -0.08]
    upper[:, 3], upper[:, 4] = [0.07, to + hd, 0], [-0.07, to + hd, 0]
    cb, sb = np.cos(bow)[:, None], np.sin(bow)[:, None]
    y, z = upper[..., 1].copy(), upper[..., 2].copy()
    upper[..., 1], upper[..., 2] = cb * y + sb * z, -sb * y + cb * z
    for j in range(11):
        joints[:, j] = upper[:, j] + [0, hip_y, 0]
    # the legs' lowest point stays on the ground while the knees bend; jumps lift everything
    joints[..., 1] -= joints[:, [15, 16], 1].min(1)[:, None]
    joints[..., 1] += lift[:, None]
    joints[..., 2] += push_z[:, None]
    return joints


def _limbs(rng: np.random.Generator) -> dict[str, float]:
    scale = rng.uniform(0.92, 1.08)
    base = {"ua": 0.30, "fa": 0.27, "th": 0.45, "sh": 0.43, "to": 0.52, "sw": 0.19, "hw": 0.11, "hd": 0.2}
    return {k: v * scale * rng.uniform(0.96, 1.04) for k, v in base.items()}


def _project(world: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Perspective projection [.., 3] -> pixels [.., 2]; the camera looks along +z from z = -3.5 m."""
    a = np.deg2rad(yaw_deg)
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    xc, zc = np.cos(a) * x + np.sin(a) * z, -np.sin(a) * x + np.cos(a) * z + 3.5
    f, (h, w) = 1000.0, IMG_SHAPE
    return np.stack([w / 2 - f * xc / zc, h * 0.6 - f * (y - 0.9) / zc], -1)


def _clip(rng: np.random.Generator, action: int, persons: int, limbs: list[dict], speed: float,
          yaw: float) -> tuple[np.ndarray, np.ndarray]:
    t = int(rng.integers(30, 61))
    p = np.clip((np.arange(t) / (t - 1) - 0.5) * speed + 0.5 + rng.uniform(-0.05, 0.05), 0, 1)
    facing = rng.uniform(-8, 8)
    people = []
    for role in range(persons):
        j = _person(action, role, p, limbs[role])
        # two persons face each other 1.1 m apart; a single one stands near the centre
        heading = np.deg2rad(facing + (90 if role == 0 else -90) * (persons == 2))
        c, s = np.cos(heading), np.sin(heading)
        x, z = j[..., 0].copy(), j[..., 2].copy()
        j[..., 0], j[..., 2] = c * x + s * z, -s * x + c * z
        j[..., 0] += (-0.55 if role == 0 else 0.55) if persons == 2 else rng.uniform(-0.2, 0.2)
        j += rng.normal(0, 0.008, j.shape)
        people.append(_project(j, yaw) + rng.normal(0, 2.0, (t, 17, 2)))
    kp = np.stack(people).astype(np.float32)
    # detector confidences in 0.3-1, most of them high (1 - 0.7 Beta(1, 5): mean 0.88), as a 2D
    # detector's on clean joints: a uniform draw makes every heatmap peak flicker
    score = (1.0 - 0.7 * rng.beta(1.0, 5.0, kp.shape[:3])).astype(np.float32)
    missing = rng.random(kp.shape[:3]) < 0.03
    kp[missing], score[missing] = 0, 0
    return kp.astype(np.float16), score.astype(np.float16)


def generate(out: str | Path, seed: int = 0) -> Path:
    """Write the toy set under `out` (deterministic from `seed`); returns the pickle's path."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    limbs = {p: _limbs(rng) for p in PERFORMERS}
    speed = {p: rng.uniform(0.9, 1.1) for p in PERFORMERS}
    annotations, splits = [], {"xsub_train": [], "xsub_val": [], "xview_train": [], "xview_val": []}
    for label, (a_num, _, persons) in enumerate(ACTIONS):
        for perf in PERFORMERS:
            partner = PERFORMERS[(PERFORMERS.index(perf) + 3) % len(PERFORMERS)]
            for cam, yaw in CAMERAS.items():
                for rep in REPLICATIONS:
                    fd = f"S001C{cam:03d}P{perf:03d}R{rep:03d}A{a_num:03d}"
                    kp, score = _clip(rng, a_num, persons, [limbs[perf], limbs[partner]], speed[perf], yaw)
                    annotations.append({"frame_dir": fd, "label": label, "img_shape": IMG_SHAPE,
                                        "original_shape": IMG_SHAPE, "total_frames": kp.shape[1],
                                        "keypoint": kp, "keypoint_score": score})
                    splits["xsub_train" if perf in XSUB_TRAIN else "xsub_val"].append(fd)
                    splits["xview_train" if cam != 1 else "xview_val"].append(fd)
    out.mkdir(parents=True, exist_ok=True)
    rows = "id,name\n" + "".join(f"{i},{name}\n" for i, (_, name, _) in enumerate(ACTIONS))
    atomic_write_bytes(out / LABELS, rows.encode())
    # the pickle last: its presence marks a complete set
    return atomic_write_bytes(out / PICKLE, pickle.dumps({"split": splits, "annotations": annotations}))


def is_complete(out: str | Path) -> bool:
    out = Path(out)
    return (out / PICKLE).is_file() and (out / LABELS).is_file()

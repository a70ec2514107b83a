"""The First-Person Hand Action benchmark (FPHA) on disk: skeletons, depth frames, the action split.

Layout under the data root (the embedded `handtoy` set writes the same files):
  Video_files/Subject_k/<action>/<seq>/depth/depth_%04d.png     640x480 uint16, mm, 0 = no reading
  Hand_pose_annotation_v1/Subject_k/<action>/<seq>/skeleton.txt  `t x1 y1 z1 ... x21 y21 z21` per frame
  data_split_action_recognition.txt                              `Training 600`, lines, `Test 575`, lines
Skeleton points are in depth-camera coordinates (mm) and project through the depth intrinsics.
Every malformed file is a DataError naming the file and line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from actlab.errors import DataError

JOINTS = ("Wrist", "TMCP", "IMCP", "MMCP", "RMCP", "PMCP", "TPIP", "TDIP", "TTIP", "IPIP", "IDIP", "ITIP",
          "MPIP", "MDIP", "MTIP", "RPIP", "RDIP", "RTIP", "PPIP", "PDIP", "PTIP")
MMCP = 3                                                   # the CoM joint of the source's reported numbers
CHAINS = (0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20)   # finger chains for drawing
# parent of each joint: the wrist for the MCPs, the previous joint of the finger otherwise
PARENT = (-1, 0, 0, 0, 0, 0, 1, 6, 7, 2, 9, 10, 3, 12, 13, 4, 15, 16, 5, 18, 19)
ACTIONS = ("open_juice_bottle", "close_juice_bottle", "pour_juice_bottle", "open_peanut_butter",
           "close_peanut_butter", "prick", "sprinkle", "scoop_spoon", "put_sugar", "stir", "open_milk",
           "close_milk", "pour_milk", "drink_mug", "put_tea_bag", "put_salt", "open_liquid_soap",
           "close_liquid_soap", "pour_liquid_soap", "wash_sponge", "flip_sponge", "scratch_sponge",
           "squeeze_sponge", "open_soda_can", "use_flash", "write", "tear_paper", "squeeze_paper", "open_letter",
           "take_letter_from_enveloppe", "read_letter", "flip_pages", "use_calculator", "light_candle",
           "charge_cell_phone", "unfold_glasses", "clean_glasses", "open_wallet", "give_coin", "receive_coin",
           "give_card", "pour_wine", "toast_wine", "handshake", "high_five")
NUM_ACTIONS = len(ACTIONS)
FX, FY, U0, V0 = 475.065948, 475.065857, 315.944855, 245.287079     # depth camera intrinsics
HEIGHT, WIDTH = 480, 640
SPLIT_FILE = "data_split_action_recognition.txt"
VIDEO_DIR, POSE_DIR = "Video_files", "Hand_pose_annotation_v1"
VALUES_PER_LINE = 1 + 3 * len(JOINTS)


@dataclass(frozen=True)
class SequenceRef:
    """One sequence of the split: `Subject_k/<action>/<seq>` and its label."""
    path: str
    label: int

    @property
    def subject(self) -> int:
        return int(self.path.split("/")[0].split("_")[1])


def project(points: np.ndarray) -> np.ndarray:
    """[..., 3] camera points (mm) -> [..., 2] pixel (u, v) through the depth intrinsics."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack([FX * p[..., 0] / p[..., 2] + U0, FY * p[..., 1] / p[..., 2] + V0], axis=-1)


def read_skeleton(path: str | Path) -> np.ndarray:
    """skeleton.txt -> [N, 21, 3] float32 (mm). Each line: `t` then 63 numbers, t = 0..N-1 in order."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read skeleton ({e})") from e
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != VALUES_PER_LINE:
            raise DataError(f"{path}, line {i}: {len(parts)} values, expected {VALUES_PER_LINE} (t and 21 x,y,z)")
        try:
            values = [float(v) for v in parts]
        except ValueError as e:
            raise DataError(f"{path}, line {i}: not a number ({e})") from e
        if values[0] != len(rows):
            raise DataError(f"{path}, line {i}: frame index t={parts[0]}, expected {len(rows)} (t = 0..N-1)")
        rows.append(values[1:])
    if not rows:
        raise DataError(f"{path}: no frames")
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(JOINTS), 3)


def read_depth(path: str | Path) -> np.ndarray:
    """A depth PNG -> uint16 [480, 640] (mm); DataError unless it is a 16-bit 480x640 image."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            if mode not in ("I;16", "I;16B", "I"):
                raise DataError(f"{path}: {mode} image, expected 16-bit depth")
            arr = np.asarray(im)
    except OSError as e:
        raise DataError(f"{path}: cannot read depth PNG ({e})") from e
    if size != (WIDTH, HEIGHT):
        raise DataError(f"{path}: {size[0]}x{size[1]} image, expected {WIDTH}x{HEIGHT}")
    if arr.dtype != np.uint16:
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise DataError(f"{path}: values outside 16 bits")
        arr = arr.astype(np.uint16)
    return arr


def _split_section(lines: list[str], at: int, header: str, path: Path) -> tuple[int, int]:
    """(count, index of the first entry) of the section whose header line is at `at`."""
    if at >= len(lines):
        raise DataError(f"{path}, line {at + 1}: missing header `{header} <count>`")
    parts = lines[at].split()
    if len(parts) != 2 or parts[0] != header or not parts[1].isdigit():
        raise DataError(f"{path}, line {at + 1}: expected header `{header} <count>`, got {lines[at]!r}")
    return int(parts[1]), at + 1


def read_split(path: str | Path, root: str | Path | None = None) -> tuple[list[SequenceRef], list[SequenceRef]]:
    """data_split_action_recognition.txt -> (train, test) lists of (sequence path, label).

    With `root`, every sequence must exist under root/Hand_pose_annotation_v1 (else DataError).
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines()]
    except OSError as e:
        raise DataError(f"{path}: cannot read split file ({e})") from e
    out = []
    at = 0
    for header in ("Training", "Test"):
        count, first = _split_section(lines, at, header, path)
        entries = []
        for i in range(first, first + count):
            if i >= len(lines) or not lines[i].strip() or lines[i].split()[0] in ("Training", "Test"):
                raise DataError(f"{path}, line {i + 1}: {header} header says {count} sequences, "
                                f"found {i - first}")
            parts = lines[i].split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{path}, line {i + 1}: expected `Subject_k/<action>/<seq> <label>`, got {lines[i]!r}")
            label = int(parts[1])
            if not 0 <= label < NUM_ACTIONS:
                raise DataError(f"{path}, line {i + 1}: label {label} outside 0-{NUM_ACTIONS - 1}")
            seq = parts[0]
            bits = seq.split("/")
            if len(bits) != 3 or not bits[0].startswith("Subject_") or not bits[0][8:].isdigit():
                raise DataError(f"{path}, line {i + 1}: unknown sequence path {seq!r}")
            if root is not None and not (Path(root) / POSE_DIR / seq / "skeleton.txt").is_file():
                raise DataError(f"{path}, line {i + 1}: unknown sequence {seq!r} "
                                f"(no {Path(root) / POSE_DIR / seq / 'skeleton.txt'})")
            entries.append(SequenceRef(seq, label))
        out.append(entries)
        at = first + count
    rest = [ln for ln in lines[at:] if ln.strip()]
    if rest:
        raise DataError(f"{path}, line {at + 1}: {len(rest)} line(s) after the Test section; "
                        f"the Test header's count does not match")
    return out[0], out[1]


def depth_paths(root: str | Path, seq: str) -> list[Path]:
    return sorted((Path(root) / VIDEO_DIR / seq / "depth").glob("depth_*.png"))


def depth_path(root: str | Path, seq: str, t: int) -> Path:
    return Path(root) / VIDEO_DIR / seq / "depth" / f"depth_{t:04d}.png"


def read_sequence_skeleton(root: str | Path, seq: str) -> np.ndarray:
    """A sequence's skeleton, checked against its depth frames (PNG count = skeleton lines)."""
    joints = read_skeleton(Path(root) / POSE_DIR / seq / "skeleton.txt")
    n_png = len(depth_paths(root, seq))
    if n_png != len(joints):
        raise DataError(f"sequence {seq}: {n_png} depth PNGs under {Path(root) / VIDEO_DIR / seq / 'depth'} "
                        f"but {len(joints)} skeleton lines")
    return joints

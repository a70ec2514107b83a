"""FPHA readers (every DataError of issue 15 §1), the handtoy generator's files, protocols and the
PCA prior's training-only fit."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from actlab.errors import DataError
from actlab.families.hand import fpha, handtoy
from actlab.families.hand.data import protocol_split, validation_split

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    return handtoy.generate(tmp_path_factory.mktemp("handtoy") / "handtoy", seed=0, actions=2, workers=1)


def _line(t: int, n: int = 63) -> str:
    return " ".join([str(t)] + ["1.0"] * n)


def test_skeleton_line_without_64_values(tmp_path):
    p = tmp_path / "skeleton.txt"
    p.write_text(_line(0) + "\n" + _line(1, 60) + "\n")
    with pytest.raises(DataError, match=r"skeleton.txt, line 2: 61 values"):
        fpha.read_skeleton(p)


def test_skeleton_t_not_0_to_n_minus_1(tmp_path):
    p = tmp_path / "skeleton.txt"
    p.write_text(_line(0) + "\n" + _line(2) + "\n")
    with pytest.raises(DataError, match=r"line 2: frame index t=2, expected 1"):
        fpha.read_skeleton(p)


def test_skeleton_reads_n_21_3(tmp_path):
    p = tmp_path / "skeleton.txt"
    p.write_text("\n".join(f"{t} " + " ".join(str(v) for v in range(t, t + 63)) for t in range(3)) + "\n")
    j = fpha.read_skeleton(p)
    assert j.shape == (3, 21, 3) and j[2, 0].tolist() == [2.0, 3.0, 4.0] and j[0, 20, 2] == 62.0


def test_png_count_differs_from_skeleton_lines_names_the_sequence(toy, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(toy, root)
    seq = "Subject_1/open_juice_bottle/1"
    pngs = fpha.depth_paths(root, seq)
    pngs[-1].unlink()
    with pytest.raises(DataError, match=rf"sequence {seq}: {len(pngs) - 1} depth PNGs .* {len(pngs)} skeleton lines"):
        fpha.read_sequence_skeleton(root, seq)


def test_depth_png_must_be_16_bit_480x640(tmp_path):
    Image.fromarray(np.zeros((480, 640), np.uint8)).save(tmp_path / "d8.png")
    with pytest.raises(DataError, match="d8.png: L image, expected 16-bit"):
        fpha.read_depth(tmp_path / "d8.png")
    Image.fromarray(np.zeros((240, 320), np.uint16)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="small.png: 320x240 image, expected 640x480"):
        fpha.read_depth(tmp_path / "small.png")
    ok = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640) % 4000
    Image.fromarray(ok.astype(np.uint16)).save(tmp_path / "ok.png")
    assert (fpha.read_depth(tmp_path / "ok.png") == ok).all()


def _split(tmp_path, text: str) -> Path:
    p = tmp_path / fpha.SPLIT_FILE
    p.write_text(text)
    return p


def test_split_missing_header(tmp_path):
    with pytest.raises(DataError, match=r"line 1: expected header `Training <count>`"):
        fpha.read_split(_split(tmp_path, "Subject_1/prick/1 5\n"))
    with pytest.raises(DataError, match=r"line 3: missing header `Test <count>`"):
        fpha.read_split(_split(tmp_path, "Training 1\nSubject_1/prick/1 5\n"))


def test_split_count_not_matching_its_header(tmp_path):
    with pytest.raises(DataError, match=r"line 3: Training header says 2 sequences, found 1"):
        fpha.read_split(_split(tmp_path, "Training 2\nSubject_1/prick/1 5\nTest 0\n"))
    with pytest.raises(DataError, match=r"line 5: 1 line\(s\) after the Test section"):
        fpha.read_split(_split(tmp_path, "Training 1\nSubject_1/prick/1 5\nTest 1\nSubject_2/prick/1 5\n"
                                          "Subject_3/prick/1 5\n"))


def test_split_unknown_sequence_and_label_out_of_range(tmp_path, toy):
    with pytest.raises(DataError, match=r"line 2: label 45 outside 0-44"):
        fpha.read_split(_split(tmp_path, "Training 1\nSubject_1/prick/1 45\nTest 0\n"))
    with pytest.raises(DataError, match=r"line 2: unknown sequence path 'Subj_1/prick'"):
        fpha.read_split(_split(tmp_path, "Training 1\nSubj_1/prick 4\nTest 0\n"))
    with pytest.raises(DataError, match=r"line 4: unknown sequence 'Subject_9/prick/1'"):
        fpha.read_split(_split(tmp_path, "Training 1\nSubject_1/open_juice_bottle/2 0\nTest 1\nSubject_9/prick/1 5\n"),
                        root=toy)


def test_handtoy_writes_fpha_files(toy):
    train, test = fpha.read_split(toy / fpha.SPLIT_FILE, root=toy)
    assert (toy / fpha.SPLIT_FILE).read_text().splitlines()[0] == "Training 12"
    assert len(train) == len(test) == 6 * 2
    assert {s.path.rsplit("/", 1)[1] for s in train} == {"2"} and {s.path.rsplit("/", 1)[1] for s in test} == {"1"}
    for s in train[:3] + test[:3]:
        joints = fpha.read_sequence_skeleton(toy, s.path)
        assert 8 <= len(joints) <= 16
        depth = fpha.read_depth(fpha.depth_path(toy, s.path, 0))
        assert depth.dtype == np.uint16 and depth.shape == (480, 640)
        u, v = np.round(fpha.project(joints[0, 3])).astype(int)     # the MMCP lies on the hand: nearer than the plane
        assert 0 < depth[v, u] < 600 and abs(float(depth[v, u]) - joints[0, 3, 2]) < 20
        assert 550 < np.median(depth) < 750 and (300 < joints[..., 2]).all() and (joints[..., 2] < 520).all()


def test_handtoy_is_deterministic_and_skips_a_complete_set(toy, tmp_path):
    # an action's files do not depend on how many actions or writer processes there are
    again = handtoy.generate(tmp_path / "again", seed=0, actions=1, workers=2)
    for rel in ("Hand_pose_annotation_v1/Subject_3/open_juice_bottle/2/skeleton.txt",
                "Video_files/Subject_5/open_juice_bottle/1/depth/depth_0003.png"):
        assert (again / rel).read_bytes() == (toy / rel).read_bytes()
    assert (again / fpha.SPLIT_FILE).read_text().splitlines()[0] == "Training 6"
    marker = (again / handtoy.MARKER).stat().st_mtime_ns
    handtoy.generate(again, seed=0, actions=1)
    assert (again / handtoy.MARKER).stat().st_mtime_ns == marker


def test_protocols_and_validation_split(toy):
    train, test = protocol_split(toy, "fpha_1to1")
    xtrain, xtest = protocol_split(toy, "fpha_xsub")
    assert {s.subject for s in xtrain} == {1, 3, 4} and {s.subject for s in xtest} == {2, 5, 6}
    assert len(xtrain) + len(xtest) == len(train) + len(test)
    fit, val = validation_split(train, 0.1, seed=0)
    assert {s.label for s in val} == {0, 1} and len(val) == 2 and not {s.path for s in fit} & {s.path for s in val}
    with pytest.raises(DataError, match="protocol 'fpha_x'"):
        protocol_split(toy, "fpha_x")


def test_pca_fit_sees_no_test_data(toy, tmp_path):
    from actlab.families.hand.job import fit_prior, load_protocol

    cfg = OmegaConf.create({"data": {"root": str(toy), "cache_dir": None}, "seed": 0,
                            "protocol": {"name": "fpha_1to1", "val_fraction": 0.1, "select_on_test": False},
                            "crop": {"cube_mm": 200, "size": 32}, "pca": {"k": 30, "max_frames": 200000}})
    data = load_protocol(cfg, with_crops=False)
    before = fit_prior(cfg, data).fit_hash()
    test = data.frames(data.test)
    data.table.joints[test] += np.random.default_rng(0).normal(0, 30, (len(test), 21, 3))
    assert fit_prior(cfg, data).fit_hash() == before
    data.table.joints[data.frames(data.val)] += 5.0          # validation frames are not fitted either
    assert fit_prior(cfg, data).fit_hash() == before
    data.table.joints[data.frames(data.train)[:1]] += 5.0
    assert fit_prior(cfg, data).fit_hash() != before


def test_fpha_main_dry_prepares_24_tasks_and_a_missing_tree_is_named(toy, tmp_path, monkeypatch):
    """`make grid EXP=fpha_main CLUSTER=bluecrystal DRY=1`: the family's check names the missing
    FPHA folder before anything is written; with a tree there, 4 points x 2 protocols x 3 seeds."""
    import yaml

    from actlab.launch.preflight import InputsError
    from actlab.launch.submit import prepare

    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path))
    for var in ("ACTLAB_SCRATCH", "ACTLAB_EGO4D", "ACTLAB_EGO4D_CHECKPOINT"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("ACTLAB_FPHA", str(tmp_path / "no_fpha"))
    profile = yaml.safe_load((REPO / "configs" / "cluster" / "bluecrystal.yaml").read_text())
    with pytest.raises(InputsError, match=r"data.root = .*no_fpha: no such folder \(set ACTLAB_FPHA"):
        prepare("fpha_main", profile, {"cpus": 1}, dry=True)
    monkeypatch.setenv("ACTLAB_FPHA", str(toy))
    sweep, manifest = prepare("fpha_main", profile, {"cpus": 1}, dry=True)
    assert manifest.family == "hand" and len(manifest.rows) == 4 * 2 * 3
    assert {r.unit for r in manifest.rows} == {"fpha_1to1", "fpha_xsub"}
    shutil.rmtree(sweep, ignore_errors=True)

"""The pyskl pickle loader's errors, the class-name CSV, and the seeded ntutoy set (issue 14 §1)."""
from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from actlab.errors import DataError
from actlab.families.skel import ntutoy
from actlab.families.skel.data import load_class_names, load_split


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("ntutoy")
    t0 = time.process_time()     # CPU time: the shared test machine's load does not count
    path = ntutoy.generate(out, seed=0)
    return path, out / ntutoy.LABELS, time.process_time() - t0


def _ann(fd="S001C001P001R001A001", t=5, m=1, v=17, c=2, label=0, score_shape=None):
    return {"frame_dir": fd, "total_frames": t, "img_shape": (1080, 1920), "original_shape": (1080, 1920),
            "label": label, "keypoint": np.ones((m, t, v, c), np.float16),
            "keypoint_score": np.ones(score_shape or (m, t, v), np.float16)}


def _write(tmp_path, data, name="x_hrnet.pkl"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,drinking water\n1,eat meal/snack\n")
    return path, labels


def test_toy_is_deterministic_small_fast_and_in_the_pyskl_layout(toy, tmp_path):
    path, labels, seconds = toy
    assert seconds < 15 and path.stat().st_size < 5e6
    data = pickle.loads(path.read_bytes())
    assert set(data["split"]) == {"xsub_train", "xsub_val", "xview_train", "xview_val"}
    assert ntutoy.generate(tmp_path, seed=0).read_bytes() == path.read_bytes()
    train = load_split(path, "xsub_train", labels)
    val = load_split(path, "xsub_val", labels)
    assert len(train.class_names) == 10 and train.class_names[0] == "sitting down"
    performers = lambda s: {x.frame_dir[8:12] for x in s.samples}   # noqa: E731
    assert performers(train) == {"P001", "P002", "P004", "P005", "P008"}
    assert performers(val) == {"P003", "P006", "P007"}
    xview = load_split(path, "xview_val", labels)
    assert {x.frame_dir[4:8] for x in xview.samples} == {"C001"}
    a = data["annotations"][0]
    assert a["keypoint"].dtype == np.float16 and a["keypoint"].shape[2:] == (17, 2)
    assert 30 <= a["total_frames"] <= 60 and a["label"] == 0 and a["frame_dir"].endswith("A008")
    persons = {x.label: x.keypoint.shape[0] for x in train.samples}
    assert sorted(k for k, m in persons.items() if m == 2) == [8, 9]
    scores = np.concatenate([x.keypoint_score.ravel() for x in train.samples]).astype(np.float32)
    assert (scores == 0).mean() > 0.01 and scores[scores > 0].min() >= 0.29 and scores.max() <= 1


def test_3d_pickles_are_refused(tmp_path):
    path, labels = _write(tmp_path, {"split": {}, "annotations": []}, "ntu60_3danno.pkl")
    with pytest.raises(DataError, match="3D pickle"):
        load_split(path, "xsub_train", labels)


@pytest.mark.parametrize("data, match", [
    ({"annotations": []}, "key 'split' missing"),
    ({"split": {"xsub_train": []}}, "key 'annotations' missing"),
    ({"split": {"xsub_val": []}, "annotations": []}, r"unknown split 'xsub_train'; present: \['xsub_val'\]"),
    ({"split": {"xsub_train": ["S001C001P001R001A002"]}, "annotations": [_ann()]},
     "frame_dir S001C001P001R001A002 with no annotation"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]},
      "annotations": [dict(_ann(), keypoint=np.ones((5, 17, 2)))]}, "must be 4-D"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [dict(_ann(), total_frames=6)]},
     "T=5 frames but total_frames=6"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [_ann(v=25, score_shape=(1, 5, 25))]},
     "V=25 joints"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [_ann(c=3)]}, "C=3 coordinates"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [_ann(score_shape=(2, 5, 17))]},
     "keypoint_score' has shape"),
    ({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [_ann(label=2)]},
     "'label' = 2 is not below the number of class names"),
])
def test_every_loader_error_names_file_and_key(tmp_path, data, match):
    path, labels = _write(tmp_path, data)
    with pytest.raises(DataError, match=match) as e:
        load_split(path, "xsub_train", labels)
    assert str(path) in str(e.value)


def test_float32_keypoints_are_accepted(tmp_path):
    ann = dict(_ann(), keypoint=np.ones((2, 5, 17, 2), np.float32), keypoint_score=np.ones((2, 5, 17), np.float32))
    path, labels = _write(tmp_path, {"split": {"xsub_train": [ann["frame_dir"]]}, "annotations": [ann]})
    assert load_split(path, "xsub_train", labels).samples[0].keypoint.shape == (2, 5, 17, 2)


@pytest.mark.parametrize("text, match", [("idx,name\n0,a\n", "line 1: header must be 'id,name'"),
                                         ("id,name\n0,a\n2,b\n", "line 3: expected '1,<name>'"),
                                         ("id,name\n", "no class names")])
def test_bad_label_csv(tmp_path, text, match):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_class_names(path)

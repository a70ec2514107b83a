"""Animal Kingdom's real formats: every DataError of issue 12 section 2 (naming file, line/row and
key), the clip-label union, the metadata cross-check, and the aktoy generator writing exactly
those formats."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from actlab.errors import DataError
from actlab.families.ak import aktoy
from actlab.families.ak.annotations import (Clip, cross_check, read_action_table, read_frame_list,
                                            with_videos)
from actlab.families.ak import data as ak_data

HEADER = "original_vido_id video_id frame_id path labels\n"


def frame_list(tmp_path, body: str, header: str = HEADER):
    path = tmp_path / "train.csv"
    path.write_text(header + body)
    return path


def action_sheet(n: int = 140) -> pd.DataFrame:
    seg = ["head"] * 17 + ["middle"] * 29 + ["tail"] * 94
    return pd.DataFrame({"S/N": range(1, n + 1), "action_category": ["c"] * n, "action": [f"a{i}" for i in range(n)],
                         "index": range(n), "segment": seg[:n], "count": [600] * 17 + [200] * 29 + [50] * 94})


def write_xlsx(path, df, sheet="AR_count"):
    with pd.ExcelWriter(path, engine="openpyxl") as w:
        df.to_excel(w, sheet_name=sheet, index=False)
    return path


def test_frame_list_union_quotes_and_empty_labels(tmp_path):
    path = frame_list(tmp_path, 'A 0 0 A/1.jpg 3\nA 0 1 A/2.jpg "3,7"\nB 1 0 B/1.jpg \nC 2 0 C/1.jpg ""\n'
                                'C 2 1 C/2.jpg 139\n')
    clips = read_frame_list(path, 140)
    assert clips == [Clip("A", (3, 7)), Clip("B", ()), Clip("C", (139,))]


@pytest.mark.parametrize("body,header,match", [
    ("A 0 0 A/1.jpg 3\n", "original_video_id video_id frame_id path labels\n", r"line 1: header"),
    ("A 0 0 A/1.jpg 3\nA 0 1 A/2.jpg\n", HEADER, r"line 3: 4 fields"),
    ("A 0 0 A/1.jpg 3 extra\n", HEADER, r"line 2: 6 fields"),
    ("A 0 0 A/1.jpg 3\nA 0 1 A/2.jpg \"3,140\"\n", HEADER, r"line 3: key labels: class 140 outside 0..139"),
    ("A 0 0 A/1.jpg x\n", HEADER, r"line 2: key labels: 'x'"),
])
def test_frame_list_errors_name_file_line_and_key(tmp_path, body, header, match):
    path = frame_list(tmp_path, body, header)
    with pytest.raises(DataError, match=match) as e:
        read_frame_list(path, 140)
    assert str(path) in str(e.value)


def test_missing_video_is_an_error_or_skipped(tmp_path, caplog):
    (tmp_path / "A.mp4").write_bytes(b"x")
    clips = [Clip("A", (1,)), Clip("B", (2,))]
    with pytest.raises(DataError, match=r"B\.mp4.*original_vido_id"):
        with_videos(clips, tmp_path, "error", "train")
    assert with_videos(clips, tmp_path, "skip", "train") == [Clip("A", (1,))]
    assert "1 of 2 train clips have no mp4" in caplog.text


def test_action_table_reads_segments_and_counts(tmp_path):
    df = action_sheet().sample(frac=1, random_state=0)            # rows in any order: `index` decides
    table = read_action_table(write_xlsx(tmp_path / "df_action.xlsx", df), 140)
    assert table.action[5] == "a5" and table.segment[16] == "head" and table.segment[17] == "middle"
    assert table.count[139] == 50 and table.num_classes == 140


@pytest.mark.parametrize("change,match", [
    (lambda df: df.drop(columns=["segment"]), r"missing column\(s\) \['segment'\]"),
    (lambda df: df.assign(index=[0] + list(range(139))), r"key index is not a permutation of 0..139"),
    (lambda df: df.assign(segment=["head"] * 5 + ["rare"] + ["tail"] * 134), r"row 7: key segment: unknown segment 'rare'"),
])
def test_action_table_errors(tmp_path, change, match):
    path = write_xlsx(tmp_path / "df_action.xlsx", change(action_sheet()))
    with pytest.raises(DataError, match=match) as e:
        read_action_table(path, 140)
    assert str(path) in str(e.value)


def test_action_table_needs_its_sheet(tmp_path):
    path = write_xlsx(tmp_path / "df_action.xlsx", action_sheet(), sheet="Sheet1")
    with pytest.raises(DataError, match="sheet AR_count"):
        read_action_table(path, 140)


def test_cross_check_lists_mismatches(tmp_path):
    meta = tmp_path / "AR_metadata.xlsx"
    write_xlsx(meta, pd.DataFrame({"S/N": [1, 2], "video_id": ["A", "B"], "type": ["train", "test"],
                                   "labels": ["1,2", "5"]}), sheet="AR")
    problems = cross_check({"train": [Clip("A", (1, 2))], "test": [Clip("B", (6,)), Clip("C", (1,))]}, meta)
    assert problems == ["test clip B: frame lists say [6], AR_metadata.xlsx says [5]",
                        f"test clip C: not in {meta}"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return aktoy.generate(tmp_path_factory.mktemp("aktoy"), seed=0, scale=0.05)


def test_aktoy_writes_the_real_formats(toy):
    assert (toy / "annotation" / "train.csv").read_text().splitlines()[0] == HEADER.strip()
    data = ak_data.load(OmegaConf.create({"root": str(toy), "num_classes": 140, "on_missing": "error",
                                          "metadata": str(toy / "AR_metadata.xlsx")}))
    assert data.mismatches == []                                   # frame-list unions = AR_metadata labels
    assert len(data.clips["train"]) == 60 and len(data.clips["test"]) == 20
    segments = np.array(data.table.segment)
    assert [(segments == s).sum() for s in ("head", "middle", "tail")] == [17, 29, 94]
    counts = np.array(data.table.count)
    assert counts[segments == "head"].min() >= 511 and counts[segments == "tail"].max() <= 96
    assert 111 <= counts[segments == "middle"].min() and counts[segments == "middle"].max() <= 499
    assert 1.6 <= data.labels["train"].sum(1).mean() <= 2.4
    no_test = (data.labels["test"].sum(0) == 0) & (segments == "tail")
    assert no_test.sum() >= 5                                       # the drop rule runs
    assert len(list((toy / "dataset" / "video").glob("*.mp4"))) == 80
    assert aktoy.is_complete(toy, 0, 0.05) and not aktoy.is_complete(toy, 1, 0.05)


def test_aktoy_is_deterministic(toy, tmp_path):
    again = aktoy.generate(tmp_path / "again", seed=0, scale=0.05)
    for rel in ("annotation/train.csv", "annotation/val.csv"):
        assert (again / rel).read_bytes() == (toy / rel).read_bytes()
    pd.testing.assert_frame_equal(pd.read_excel(again / "annotation/df_action.xlsx"),
                                  pd.read_excel(toy / "annotation/df_action.xlsx"))


def test_make_aktoy_writes_the_same_set_with_its_clip_in_a_forked_process(toy, tmp_path):
    """jobs/make_aktoy.py (no torch loaded yet: the tiny CLIP is written by a forked process while
    the clips are encoded) writes what generate() writes in-process; a regeneration (--force, over
    a copy of the in-process set) replaces the clips folder and leaves no staging folder behind."""
    import shutil
    import subprocess
    import sys

    import torch

    from conftest import REPO

    out = shutil.copytree(toy, tmp_path / "cli")
    (out / "clip" / "ak_tiny.pt").unlink()
    (out / "dataset" / "video" / "stale.mp4").write_bytes(b"")
    proc = subprocess.run([sys.executable, "jobs/make_aktoy.py", "--out", str(out), "--scale", "0.05", "--force"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert aktoy.is_complete(out, 0, 0.05)
    assert sorted(p.name for p in (out / "dataset").iterdir()) == ["video"]
    videos = sorted(p.name for p in (toy / "dataset" / "video").iterdir())
    assert sorted(p.name for p in (out / "dataset" / "video").iterdir()) == videos
    assert all((out / "dataset" / "video" / v).read_bytes() == (toy / "dataset" / "video" / v).read_bytes()
               for v in videos)
    a = torch.load(out / "clip" / "ak_tiny.pt", weights_only=True)
    b = torch.load(toy / "clip" / "ak_tiny.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""Check the real Animal Kingdom action-recognition files against the facts the ak family relies
on (run it once on the cluster after downloading the data set):

    python jobs/ak_check_data.py --root $ACTLAB_AK [--metadata $ACTLAB_AK/AR_metadata.xlsx]

30,100 clips (24,004 train / 6,096 test); 2.16 labels per clip on average, at most 12; the head
and middle classes of df_action.xlsx (17 / 29, tail 94) as listed below; 13 tail classes without a
positive test clip; every clip's mp4 present; frame-list labels = AR_metadata.xlsx labels.
Prints one line per check and exits 1 when any fails.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from actlab.errors import DataError
from actlab.families.ak.annotations import (SPLIT_FILES, cross_check, label_matrix, read_action_table,
                                            read_frame_list)

HEAD = {1, 2, 15, 38, 40, 48, 52, 67, 68, 69, 78, 90, 100, 102, 104, 123, 133}
MIDDLE = {5, 7, 8, 13, 16, 25, 26, 27, 32, 39, 45, 47, 50, 51, 58, 65, 76, 80, 96, 97, 103, 105, 112, 114, 116,
          120, 121, 128, 135}
NO_TEST_POSITIVE = {4, 24, 34, 36, 53, 63, 70, 77, 86, 89, 111, 113, 126}
CLIPS = {"train": 24004, "test": 6096}


def checks(root: Path, metadata: Path | None) -> list[tuple[str, bool, str]]:
    table = read_action_table(root / "annotation" / "df_action.xlsx", 140)
    clips = {split: read_frame_list(root / "annotation" / name, 140) for split, name in SPLIT_FILES.items()}
    labels = {split: label_matrix(c, 140) for split, c in clips.items()}
    per_clip = np.concatenate([y.sum(1) for y in labels.values()])
    segment = np.array(table.segment)
    head, middle = set(np.flatnonzero(segment == "head")), set(np.flatnonzero(segment == "middle"))
    empty_test = set(np.flatnonzero(labels["test"].sum(0) == 0))
    videos = root / "dataset" / "video"
    missing = [c.video for cs in clips.values() for c in cs if not (videos / f"{c.video}.mp4").is_file()]
    out = [(f"{split} clips = {n}", len(clips[split]) == n, str(len(clips[split]))) for split, n in CLIPS.items()]
    out += [("labels per clip: mean 2.16", round(float(per_clip.mean()), 2) == 2.16, f"{per_clip.mean():.4f}"),
            ("labels per clip: max 12", int(per_clip.max()) == 12, str(int(per_clip.max()))),
            ("head classes (segment column)", head == HEAD, str(sorted(head))),
            ("middle classes (segment column)", middle == MIDDLE, str(sorted(middle))),
            ("tail classes: 94", int((segment == "tail").sum()) == 94, str(int((segment == "tail").sum()))),
            ("tail classes without a test positive", empty_test == NO_TEST_POSITIVE
             and all(segment[c] == "tail" for c in empty_test), str(sorted(empty_test))),
            ("every clip has its mp4", not missing, f"{len(missing)} missing" + (f", e.g. {missing[:3]}" if missing else ""))]
    if metadata is not None and metadata.is_file():
        problems = cross_check(clips, metadata)
        out.append((f"labels agree with {metadata.name}", not problems,
                    f"{len(problems)} mismatches" + (f", e.g. {problems[:3]}" if problems else "")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the data set root (annotation/, dataset/video/)")
    p.add_argument("--metadata", help="AR_metadata.xlsx (default: <root>/AR_metadata.xlsx when present)")
    args = p.parse_args(argv)
    root = Path(args.root)
    try:
        results = checks(root, Path(args.metadata) if args.metadata else root / "AR_metadata.xlsx")
    except DataError as e:
        print(f"ak_check_data: {e}", file=sys.stderr)
        return 2
    for what, ok, value in results:
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {value}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

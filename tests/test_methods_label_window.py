"""Label-window predictor: tie-break (lowest index / recency) and every variant on a 6-sample
stream, predictions worked out by hand below."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.methods.label_window import LabelWindow, window_logits
from actlab.families.continual.metrics.online import OnlineMetrics
from actlab.families.continual.models.video import VideoClassifier

C = 5                                   # classes per task
VERBS = [1, 3, 2, 2, 3, 4]              # the stream's verb labels; window W = 2, batches of 2
NOUNS = [0, 0, 1, 1, 1, 1]
MODEL = SimpleNamespace(verb_head=SimpleNamespace(out_features=C), noun_head=SimpleNamespace(out_features=C))

# Windows (W = 2) per sample, and the top-1 for tie_break lowest / recent:
# per_sample (the 2 labels before the sample): [] [1] [1,3] [3,2] [2,2] [2,3]
#   lowest 0 1 1 2 2 2   (empty window: all tied -> class 0; [1,3] -> 1; [2,3] -> 2)
#   recent 0 1 3 2 2 3   ([1,3] -> 3 came last; [3,2] -> 2; [2,3] -> 3)
# batched (the previous batch): batch 0 [] -> 0 0; batch 1 [1,3]; batch 2 [2,2]
#   lowest 0 0 1 1 2 2;  recent 0 0 3 3 2 2
# inclusive (the sample itself and the one before): [1] [1,3] [3,2] [2,2] [2,3] [3,4]
#   lowest 1 1 2 2 2 3;  recent 1 3 2 2 3 4
# final_window (upstream's hindsight predictor: the stream's final 2 labels [3,4] for everyone)
#   lowest 3 3 3 3 3 3;  recent 4 4 4 4 4 4
EXPECTED = {
    ("per_sample", "lowest"): [0, 1, 1, 2, 2, 2], ("per_sample", "recent"): [0, 1, 3, 2, 2, 3],
    ("batched", "lowest"): [0, 0, 1, 1, 2, 2], ("batched", "recent"): [0, 0, 3, 3, 2, 2],
    ("inclusive", "lowest"): [1, 1, 2, 2, 2, 3], ("inclusive", "recent"): [1, 3, 2, 2, 3, 4],
    ("final_window", "lowest"): [3] * 6, ("final_window", "recent"): [4] * 6,
}


def batches(size: int = 2):
    for s in range(0, len(VERBS), size):
        yield {"verb": torch.tensor(VERBS[s:s + size]), "noun": torch.tensor(NOUNS[s:s + size]),
               "index": torch.arange(s, min(s + size, len(VERBS)))}


def online_top1(method: LabelWindow) -> list[int]:
    if method.needs_stream_labels:
        method.see_stream_labels(list(zip(VERBS, NOUNS)))
    preds = []
    for batch in batches():
        preds += method.online_predict(MODEL, batch)["verb"].argmax(1).tolist()
        method.observe(batch)
    return preds


@pytest.mark.parametrize("variant,tie_break", sorted(EXPECTED))
def test_every_variant_and_tie_break_on_a_six_sample_stream(variant, tie_break):
    method = LabelWindow(window=2, variant=variant, tie_break=tie_break)
    assert online_top1(method) == EXPECTED[(variant, tie_break)]
    # end-of-stream hindsight evaluation: every sample from the final window [3, 4]
    final = method.hindsight_predict(MODEL, 6)["verb"].argmax(1).tolist()
    assert final == ([3] * 6 if tie_break == "lowest" else [4] * 6)


def test_default_is_upstream_lowest_index_tie_break():
    assert LabelWindow(window=2, variant="per_sample").tie_break == "lowest"
    assert online_top1(LabelWindow(window=2, variant="per_sample")) == EXPECTED[("per_sample", "lowest")]


def test_logits_rank_by_count_then_tie_break():
    # window [3, 1, 3]: label 3 twice, 1 once, 0 / 2 / 4 never.
    lowest = window_logits([3, 1, 3], C, "lowest")
    assert lowest.argsort(descending=True).tolist() == [3, 1, 0, 2, 4]
    # window [1, 3, 4]: all once; lowest -> 1, 3, 4 then the unseen 0, 2; recent -> 4, 3, 1 then 0, 2
    assert window_logits([1, 3, 4], C, "lowest").argsort(descending=True).tolist() == [1, 3, 4, 0, 2]
    assert window_logits([1, 3, 4], C, "recent").argsort(descending=True).tolist() == [4, 3, 1, 0, 2]
    # counts stay readable: every logit is within half a count of the label's count
    assert torch.all((lowest - torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0])).abs() < 0.5)
    # the tie-break survives float32 at Ego4D's head sizes (478 nouns, window 64)
    big = window_logits([477, 476] * 32, 478, "lowest")
    assert big.argsort(descending=True)[:3].tolist() == [476, 477, 0]
    big = window_logits([477, 476] * 32, 478, "recent")
    assert big.argsort(descending=True)[:3].tolist() == [476, 477, 0]


def test_nouns_are_predicted_independently():
    method = LabelWindow(window=2, variant="per_sample")
    preds = []
    for batch in batches():
        preds += method.online_predict(MODEL, batch)["noun"].argmax(1).tolist()
        method.observe(batch)
    # noun windows: [] [0] [0,0] [0,1] [1,1] [1,1] -> 0 0 0 0(tie, lowest) 1 1
    assert preds == [0, 0, 0, 0, 1, 1]


def test_old_hindsight_name_and_bad_options_are_rejected_with_the_key():
    with pytest.raises(ValueError, match=r"method.variant.*renamed.*inclusive.*final_window"):
        LabelWindow(window=2, variant="hindsight")
    with pytest.raises(ValueError, match="method.tie_break"):
        LabelWindow(window=2, tie_break="random")


def test_final_window_needs_the_stream_labels_first():
    method = LabelWindow(window=2, variant="final_window")
    with pytest.raises(RuntimeError, match="stream labels"):
        method.online_predict(MODEL, next(batches()))


class LabelOnlyStream(torch.utils.data.Dataset):
    """Six samples with the labels above; exposes them without decoding, as ClipDataset does."""

    def __len__(self) -> int:
        return len(VERBS)

    def __getitem__(self, i: int) -> dict:
        return {"video": torch.zeros(3, 2, 4, 4), "verb": VERBS[i], "noun": NOUNS[i], "index": i}

    def stream_labels(self) -> list[tuple[int, int]]:
        return list(zip(VERBS, NOUNS))


def test_the_loop_hands_final_window_the_whole_streams_labels():
    model = VideoClassifier(torch.nn.Flatten(), 3 * 2 * 4 * 4, C, C, dropout=0.0)   # never used to predict
    # wrapped in the in-memory clip cache, as a stream job with cache_clips does
    result = run_stream(model, LabelWindow(window=2, variant="final_window"), InMemoryClips(LabelOnlyStream()),
                        metrics=OnlineMetrics(C, C), batch_size=2)
    assert result.records["pred_verb"].tolist() == [3] * 6
    # nouns: the final window [1, 1] -> 1 for everyone
    assert result.records["pred_noun"].tolist() == [1] * 6


@pytest.mark.parametrize("name, variants", [
    ("egotoy_label_window", {"per_sample", "batched", "inclusive", "final_window"}),
    ("ego4d_label_window", {"per_sample"}),     # upstream's non-stationarity ablation; the rest are in ego4d_test
])
def test_experiment_grids_name_existing_variants(name, variants):
    from pathlib import Path

    from omegaconf import OmegaConf

    grid = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "continual" / "experiment"
                          / f"{name}.yaml").grid
    assert set(grid["method.variant"]) == variants
    for window in grid["method.window"]:
        for variant in grid["method.variant"]:
            LabelWindow(window=window, variant=variant)

"""Segment geometry, matcher, windows, top-k decoding and the RoI classifier (issue 13, §3-4, §7)."""
import math

import numpy as np
import pytest
import torch

from actlab import device as compute
from actlab.families.zstal.boxes import cw_to_se, pairwise_iou_giou, se_to_cw, topk_flat
from actlab.families.zstal.matcher import Weights, match, set_loss
from actlab.families.zstal.roi import class_logits, decode, fuse, roi_boxes, roi_features
from actlab.families.zstal.detector import ProposalDETR
from actlab.families.zstal.infer import Classifier, predict
from actlab.families.zstal.samples import TestVideo
from actlab.families.zstal.windows import Window, cut_instances, inference_windows, to_video, training_windows
from test_device_placement import CUDA, fake_cuda  # noqa: F401  (the fixture)


def test_cw_to_se_clamps_and_round_trips():
    se = cw_to_se(torch.tensor([[0.5, 0.2], [0.05, 0.3], [0.9, 0.4]]))
    torch.testing.assert_close(se, torch.tensor([[0.4, 0.6], [0.0, 0.2], [0.7, 1.0]]))
    inside = torch.tensor([[0.3, 0.2], [0.6, 0.5]])
    assert torch.allclose(se_to_cw(cw_to_se(inside)), inside)


def test_giou_1d():
    iou, giou = pairwise_iou_giou(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 3.0], [4.0, 5.0], [0.0, 2.0]]))
    # [0,2] vs [1,3]: inter 1, union 3, hull 3; vs [4,5]: inter 0, union 3, hull 5
    torch.testing.assert_close(iou[0], torch.tensor([1 / 3, 0.0, 1.0]))
    torch.testing.assert_close(giou[0], torch.tensor([1 / 3, 0 - 2 / 5, 1.0]))


def test_matcher_two_by_two():
    rows, cols = match(torch.tensor([[1.0, 5.0], [2.0, 10.0]]))
    # 1 + 10 = 11 vs 5 + 2 = 7: query 0 -> GT 1, query 1 -> GT 0
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_set_loss_prefers_the_right_boxes():
    target = [torch.tensor([[0.1, 0.3], [0.6, 0.9]])]
    good = [{"cw": se_to_cw(torch.tensor([[[0.6, 0.9], [0.1, 0.3]]])), "logit": torch.tensor([[5.0, 5.0]])}]
    bad = [{"cw": torch.tensor([[[0.5, 0.1], [0.5, 0.1]]]), "logit": torch.tensor([[-5.0, -5.0]])}]
    assert set_loss(good, target, Weights())[0] < 0.01 < set_loss(bad, target, Weights())[0]


def test_windows_golden_t300():
    assert [w.start for w in training_windows(300, 128, 0.75)] == [0, 32, 64, 96, 128, 160, 172]
    assert all(w.length == 128 for w in training_windows(300, 128, 0.75))
    spans = [(w.start, w.start + w.length - 1) for w in inference_windows(300, 128, 0.25)]
    assert spans == [(0, 127), (96, 223), (192, 299)]
    assert training_windows(100, 128, 0.75) == [Window(0, 100)]
    assert inference_windows(100, 128, 0.25) == [Window(0, 100)]


def test_instances_cut_by_a_window():
    segs = np.array([[10.0, 50.0], [100.0, 140.0], [120.0, 160.0], [200.0, 210.0]])
    # window [32, 160): [10,50] has 18/40 inside (dropped); [100,140] whole; [120,160] whole; [200,210] outside
    cut = cut_instances(segs, Window(32, 128), 0.75)
    assert cut.tolist() == [[68.0, 108.0], [88.0, 128.0]]
    # window [0, 128): [120,160] has 8/40 inside -> dropped; [100,140] has 28/40 = 0.7 -> dropped
    assert cut_instances(segs, Window(0, 128), 0.75).tolist() == [[10.0, 50.0]]
    assert cut_instances(np.array([[110.0, 140.0]]), Window(0, 128), 0.5).tolist() == [[110.0, 128.0]]


def test_window_to_video_offsets_use_the_valid_length():
    assert to_video(np.array([[0.0, 0.5]]), Window(192, 108)).tolist() == [[192.0, 246.0]]
    assert to_video(np.array([[0.25, 1.0]]), Window(96, 128)).tolist() == [[128.0, 224.0]]


def test_topk_index_decoding():
    prob = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.3, 0.05]])
    scores, queries, classes = topk_flat(prob, 3)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.3])
    assert queries.tolist() == [0, 1, 1] and classes.tolist() == [1, 0, 1]
    s, q, c = decode(prob, "class_one", 100)
    # query-mean (0.45, 0.6, 0.125) -> class 1 for every query
    assert c.tolist() == [1, 1] and s.tolist() == pytest.approx([0.9, 0.3])


def test_roi_coordinates_follow_the_valid_length():
    se = torch.tensor([[[0.0, 0.5]], [[0.5, 1.0]]])
    rois = roi_boxes(se, torch.tensor([128, 60]))
    assert rois.tolist() == [[0, 0, 0, 64, 0], [1, 30, 0, 60, 0]]


def test_roi_features_on_a_padded_batch_stay_finite_and_local():
    feats = torch.zeros(2, 128, 4)
    feats[1, :60] = torch.arange(60.0)[:, None]          # valid 60, then padding
    pooled = roi_features(feats, roi_boxes(torch.tensor([[[0.0, 1.0]], [[0.5, 1.0]]]), torch.tensor([128, 60])), 16)
    assert pooled.shape == (2, 4, 16) and torch.isfinite(pooled).all()
    # the second item's RoI [30, 60] stays inside its valid snippets: values 30..59
    assert 29.5 <= pooled[1].min() and pooled[1].max() <= 59.0


def test_logit_scale_is_exponentiated():
    text = torch.eye(3)
    pooled = torch.zeros(1, 3, 4)
    pooled[0, 0] = 1.0                                   # cos 1 with class 0
    logits = class_logits(pooled, text, math.log(100.0))
    assert logits[0].tolist() == pytest.approx([100.0, 0.0, 0.0])
    assert class_logits(pooled, text, math.log(100.0), exp_scale=False)[0, 0] == pytest.approx(math.log(100.0))
    assert class_logits(pooled, text, math.log(100.0), pool="after")[0, 0] == pytest.approx(100.0)


def test_fp16_text_is_cast_to_float32():
    pooled = torch.randn(2, 8, 4)
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    out = class_logits(pooled, text.half(), 1.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, class_logits(pooled, text.half().float(), 1.0))


def test_fusions():
    a, logits = torch.tensor([0.0]), torch.tensor([[2.0, 0.0]])
    p = torch.tensor([2.0, 0.0]).softmax(-1)
    assert fuse(a, logits, "after_softmax")[0].tolist() == pytest.approx((0.5 * p).tolist())
    assert fuse(a, logits, "geometric")[0].tolist() == pytest.approx((0.5 * p).sqrt().tolist())
    assert fuse(a, logits, "sigmoid")[0].tolist() == pytest.approx((0.5 * torch.tensor([2.0, 0.0]).sigmoid()).tolist())
    assert torch.isfinite(fuse(torch.tensor([-1e4]), logits, "geometric")).all()


def test_inference_runs_the_detector_on_its_device_with_the_cpu_detections(fake_cuda, monkeypatch):
    """`predict` moves each video's windows to where the detector is (a model 'moved' to CUDA here:
    the tensors stay on the CPU, tagged) and decodes the same detections as the CPU run."""
    check, checked = fake_cuda
    rng = np.random.default_rng(0)
    videos = [TestVideo(f"v{i}", rng.standard_normal((t, 16)).astype(np.float32),
                        (Window(0, min(t, 12)), Window(max(0, t - 12), min(t, 12))), 0.5) for i, t in enumerate((12, 20))]
    text = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((3, 16)).astype(np.float32)), dim=1)
    clf = Classifier(text, ["a", "b", "c"], math.log(100.0), slots=4, topk=5)
    torch.manual_seed(0)
    model = ProposalDETR(16, d_model=16, heads=2, enc_layers=1, dec_layers=1, queries=6, ffn=32)
    cpu = predict(model, videos, clf, 12)
    monkeypatch.setattr(compute, "module_device",
                        lambda m: CUDA if getattr(next(m.parameters()), "placed", None) else torch.device("cpu"))
    model.to(CUDA)
    model.register_forward_pre_hook(lambda module, args: check(model, args))
    gpu = predict(model, videos, clf, 12)
    assert checked["batches"] == 2 and len(cpu[0]) == 2 * 2 * 5
    assert cpu == gpu

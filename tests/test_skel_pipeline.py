"""The PoseC3D input pipeline: heatmap golden values, vectorised = pyskl's loop, the sampler's
three regimes, PoseCompact and flips (issue 14 §2, §9)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from actlab.families.skel.pipeline import (FLIP_ORDER, PipelineConfig, flip, heatmaps, heatmaps_loop, pose_compact,
                                           sample_test, sample_train, eval_views, train_view)


def test_heatmap_peak_is_the_score_and_a_neighbour_is_score_exp_minus_1_over_072():
    kp = np.zeros((1, 1, 17, 2), np.float32)
    score = np.zeros((1, 1, 17), np.float32)
    kp[0, 0, 5] = (10, 20)
    score[0, 0, 5] = 0.8
    h = heatmaps(kp, score, (32, 32), sigma=0.6)
    assert h.shape == (17, 1, 32, 32)
    assert h[5, 0, 20, 10] == pytest.approx(0.8, abs=1e-7)
    assert h[5, 0, 20, 11] == pytest.approx(0.8 * math.exp(-1 / 0.72), abs=1e-7)
    assert h[5, 0, 21, 10] == pytest.approx(0.8 * math.exp(-1 / 0.72), abs=1e-7)
    assert h[5, 0, 20, 13] == 0          # outside the +-3 sigma patch
    assert h[[j for j in range(17) if j != 5]].max() == 0


def test_low_scores_are_skipped_and_persons_take_the_maximum():
    kp = np.zeros((2, 1, 17, 2), np.float32)
    score = np.zeros((2, 1, 17), np.float32)
    kp[:, 0, 0] = [(5, 5), (5.4, 5)]
    score[:, 0, 0] = [0.5, 0.9]
    kp[0, 0, 1], score[0, 0, 1] = (8, 8), 5e-4
    h = heatmaps(kp, score, (16, 16))
    assert h[1].max() == 0
    np.testing.assert_allclose(h[0, 0], np.maximum(heatmaps(kp[:1], score[:1], (16, 16))[0, 0],
                                                   heatmaps(kp[1:], score[1:], (16, 16))[0, 0]))


def test_vectorised_heatmaps_equal_the_loop_reference():
    rng = np.random.default_rng(0)
    kp = rng.uniform(-3, 60, (2, 6, 17, 2)).astype(np.float32)    # some joints off the image
    score = rng.uniform(0, 1, (2, 6, 17)).astype(np.float32)
    score[0, 0, :4] = 0
    np.testing.assert_allclose(heatmaps(kp, score, (56, 56)), heatmaps_loop(kp, score, (56, 56)), atol=1e-6)


@pytest.mark.parametrize("num_frames", [10, 48, 70, 96, 200])
def test_train_sampler_regimes(num_frames):
    L = 48
    inds = sample_train(num_frames, L, np.random.default_rng(1))
    assert inds.shape == (L,) and inds.min() >= 0 and inds.max() < num_frames
    if num_frames < L:              # a random start, looping over the video
        start = inds[0]
        np.testing.assert_array_equal(inds, (start + np.arange(L)) % num_frames)
    elif num_frames < 2 * L:        # in order, each frame at most once, T - L skipped
        assert (np.diff(inds) >= 1).all() and (np.diff(inds) <= 2).all()
    else:                           # one frame per equal segment
        bounds = [i * num_frames // L for i in range(L + 1)]
        assert all(bounds[i] <= inds[i] < bounds[i + 1] for i in range(L))


def test_test_sampler_is_seeded_and_gives_num_clips():
    a, b = sample_test(100, 48, 10), sample_test(100, 48, 10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 48)
    assert len({tuple(c) for c in a}) > 1
    short = sample_test(5, 8, 10)     # fewer frames than clips: starts 0..9, looping
    np.testing.assert_array_equal(short[3], (3 + np.arange(8)) % 5)


def test_pose_compact_pads_25_percent_square_and_skips_small_boxes():
    kp = np.zeros((1, 2, 17, 2), np.float32)
    kp[0, 0, 0], kp[0, 1, 1] = (100, 200), (140, 300)    # box 40 x 100; others missing (0, 0)
    out, shape = pose_compact(kp, (1080, 1920))
    assert shape == (125.0, 125.0)
    np.testing.assert_allclose(out[0, 0, 0], (100 - 57.5, 200 - 187.5))
    tiny = np.zeros((1, 1, 17, 2), np.float32)
    tiny[0, 0, :2] = [(100, 100), (105, 130)]
    same, shape = pose_compact(tiny, (1080, 1920))
    assert shape == (1080, 1920) and np.array_equal(same, tiny)


def test_flip_swaps_left_and_right_joints():
    assert FLIP_ORDER[1] == 2 and FLIP_ORDER[16] == 15 and FLIP_ORDER[0] == 0
    kp = np.arange(34, dtype=np.float32).reshape(1, 1, 17, 2)
    score = np.arange(17, dtype=np.float32).reshape(1, 1, 17)
    k, s = flip(kp, score, 56)
    assert s[0, 0, 1] == 2 and s[0, 0, 2] == 1
    assert k[0, 0, 1, 0] == 56 - kp[0, 0, 2, 0]


def test_train_and_test_views_have_the_configured_shapes():
    rng = np.random.default_rng(0)
    kp = rng.uniform(500, 900, (2, 40, 17, 2)).astype(np.float32)
    score = rng.uniform(0.3, 1, (2, 40, 17)).astype(np.float32)
    cfg = PipelineConfig()
    x = train_view(kp, score, (1080, 1920), cfg, np.random.default_rng(0))
    assert x.shape == (17, 48, 56, 56) and 0 < x.max() <= 1
    y = eval_views(kp, score, (1080, 1920), PipelineConfig(clip_len=16, num_test_clips=2, test_size=32))
    assert y.shape == (4, 17, 16, 32, 32)
    # the second view is the first one's flip (x -> W - x): joint 1's map is joint 2's, mirrored
    np.testing.assert_allclose(y[1, 1][..., 1:], y[0, 2][..., ::-1][..., :-1], atol=0.05)
    np.testing.assert_array_equal(train_view(kp, score, (1080, 1920), cfg, np.random.default_rng(3)),
                                  train_view(kp, score, (1080, 1920), cfg, np.random.default_rng(3)))

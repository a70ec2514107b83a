"""Golden values of the hand family's metrics, PCA prior, projection/crop and model pieces (§9 of
issue 15), worked out by hand from the definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab import device as compute
from actlab.families.hand import crop, fpha
from actlab.families.hand.metrics import (THRESHOLDS, auc, frame_success, joint_errors, mean_joint_error, pck,
                                          topk_accuracy)
from actlab.families.hand.models import ActionLSTM, FiLM, PoseNet, condition
from actlab.families.hand.pca import PCAPrior
from actlab.families.hand.train import SequenceDataset, action_scores, predict_pose
from test_device_placement import CUDA, fake_cuda  # noqa: F401  (the fixture)


def test_one_joint_off_by_3_4_0_in_two_frames_gives_5_over_42():
    gt = np.zeros((2, 21, 3))
    pred = gt.copy()
    pred[1, 7] = [3.0, 4.0, 0.0]
    errors = joint_errors(pred, gt)
    assert errors[1, 7] == pytest.approx(5.0)
    assert mean_joint_error(errors) == pytest.approx(5 / 42)


def test_constant_10mm_offset_gives_10():
    gt = np.random.default_rng(0).normal(size=(4, 21, 3)) * 50
    assert mean_joint_error(joint_errors(gt + np.array([6.0, 0.0, 8.0]), gt)) == pytest.approx(10.0)


def test_auc_golden_cases():
    e40 = np.full((3, 21), 40.0)
    assert auc(pck(e40), THRESHOLDS) == pytest.approx(40.5 / 80) == pytest.approx(0.50625)
    assert auc(pck(np.zeros((3, 21)))) == pytest.approx(1.0)
    assert auc(frame_success(np.zeros((3, 21)))) == pytest.approx(1.0)
    assert auc(pck(np.full((3, 21), 81.0))) == 0.0
    assert auc(THRESHOLDS / 80, THRESHOLDS) == pytest.approx(0.5)


def test_pck_counts_pairs_but_fs_counts_frames():
    errors = np.full((2, 21), 5.0)
    errors[1, 4] = 30.0
    assert pck(errors, np.array([5.0]))[0] == pytest.approx(41 / 42)
    assert frame_success(errors, np.array([5.0]))[0] == pytest.approx(0.5)


def test_topk_hit_iff_fewer_than_k_classes_score_higher():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    labels = np.array([2, 0, 1])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(0.0)
    # row 1: one class (2) above the true class, the tie at 0.3 does not count: a top-2 hit
    assert topk_accuracy(scores, labels, 2) == pytest.approx(1.0)


def test_pca_reconstructs_rank5_data_exactly_and_its_decoder_is_the_numpy_decode():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 63)) + rng.normal(size=63)
    prior = PCAPrior.fit(Y, 5)
    assert np.abs(prior.decode(prior.encode(Y)) - Y).max() < 1e-9
    z = prior.encode(Y[:7])
    layer = prior.decoder()
    assert not any(p.requires_grad for p in layer.parameters())
    out = layer(torch.as_tensor(z, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(out, prior.decode(z), atol=1e-4)
    assert prior.fit_hash() == PCAPrior.from_arrays(prior.to_arrays()).fit_hash()


def test_principal_point_projects_to_u0_v0():
    np.testing.assert_allclose(fpha.project(np.array([0.0, 0.0, 400.0])), [fpha.U0, fpha.V0])
    u, v = fpha.project(np.array([100.0, -50.0, 500.0]))
    assert u == pytest.approx(fpha.FX * 100 / 500 + fpha.U0) and v == pytest.approx(fpha.FY * -50 / 500 + fpha.V0)


def test_crop_width_at_400mm_is_237_53_px():
    w, h = crop.crop_width(400.0, 200.0)
    assert w == pytest.approx(200 * 475.065948 / 400) and round(w, 2) == 237.53


def test_depth_normalisation_golden():
    out = crop.normalise_depth(np.array([0, 300, 400, 450, 900]), 400.0, 200.0)
    np.testing.assert_allclose(out, [1, -1, 0, 0.5, 1])


def test_crop_outside_the_image_is_background_and_the_centre_pixel_is_the_com_depth():
    depth = np.full((fpha.HEIGHT, fpha.WIDTH), 420, np.uint16)
    com = np.array([0.0, 0.0, 400.0])
    out = crop.crop_frame(depth, com, 200.0, 32)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)            # (420 - 400) / 100
    edge = crop.crop_frame(depth, np.array([-300.0, 0.0, 400.0]), 200.0, 32)   # u = -40: the left part is outside
    assert (edge[:, 0] == 1.0).all() and np.allclose(edge[:, -1], 0.2)


def test_film_with_zero_generator_is_the_identity():
    film = FiLM(8)
    with torch.no_grad():
        film.generator.weight.zero_()
        film.generator.bias.zero_()
    x = torch.randn(3, 8, 5, 5)
    a = condition(torch.tensor([0, 4, 44]), 0.0)
    assert torch.equal(film(x, a), x)
    with torch.no_grad():
        film.generator.bias[8:] = 1.0                          # beta = 1, gamma = 0: a shift
    assert torch.allclose(film(x, a), x + 1)


def test_cond_dropout_rate():
    labels = torch.randint(0, 45, (20000,), generator=torch.Generator().manual_seed(0))
    a = condition(labels, 0.3, torch.Generator().manual_seed(1))
    uniform = (a.max(dim=1).values < 0.5)
    assert abs(uniform.float().mean().item() - 0.3) < 0.015
    assert torch.allclose(a[uniform], torch.full_like(a[uniform], 1 / 45))
    assert (a[~uniform].argmax(1) == labels[~uniform]).all()
    assert (condition(labels[:50], 0.0) == torch.nn.functional.one_hot(labels[:50], 45)).all()
    assert torch.allclose(condition(labels[:50], 1.0), torch.full((50, 45), 1 / 45))


def test_packed_lstm_last_state_equals_a_per_step_loop():
    torch.manual_seed(0)
    model = ActionLSTM(63, 100)
    lengths = torch.tensor([5, 12, 1, 9])
    x = torch.randn(4, 12, 63)
    x[0, 5:] = 99.0                                            # padding must not leak into the state
    with torch.no_grad():
        torch.testing.assert_close(model.last_hidden(x, lengths), model.last_hidden_loop(x, lengths),
                                   atol=1e-5, rtol=1e-5)


def test_pose_net_film_condition_changes_the_output_and_needs_it():
    torch.manual_seed(0)
    prior = PCAPrior.fit(np.random.default_rng(0).normal(size=(100, 63)), 30)
    net = PoseNet(prior.decoder(), widths=(8, 16, 16, 16), blocks=1, stem=8, fc=32, input_size=32, film=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with pytest.raises(ValueError):
        net(x)
    a = condition(torch.tensor([0, 1]), 0.0)
    base = net(x, a)
    for p in net.film_fc.parameters():
        torch.nn.init.normal_(p)
    assert not torch.allclose(net(x, a), base)
    assert net.keypoints(x, a).shape == (2, 63)


def test_pose_and_action_evaluation_run_on_the_models_device_with_the_cpu_results(fake_cuda, monkeypatch):
    """`predict_pose` (crops and FiLM conditions) and `action_scores` (sequences; lengths stay on the
    CPU for packing) move their inputs to where the model is (a model 'moved' to CUDA here: the
    tensors stay on the CPU, tagged) and give the CPU run's numbers."""
    check, checked = fake_cuda
    rng = np.random.default_rng(0)
    crops = rng.random((7, 32, 32), dtype=np.float32)
    frames, cond = np.array([0, 2, 3, 6, 5]), np.eye(fpha.NUM_ACTIONS, dtype=np.float32)[[1, 2, 3, 4, 5]]
    seqs = SequenceDataset([rng.standard_normal((t, 63)).astype(np.float32) for t in (5, 3, 8)], [0, 1, 2], 6)

    def nets():
        torch.manual_seed(0)
        prior = PCAPrior.fit(np.random.default_rng(1).normal(size=(100, 63)), 30)
        pose = PoseNet(prior.decoder(), widths=(8, 16, 16, 16), blocks=1, stem=8, fc=32, input_size=32, film=True)
        return pose, ActionLSTM(63, 16)

    def evaluate(pose, har):
        return predict_pose(pose, crops, frames, cond, 200.0, batch_size=2), action_scores(har, seqs, batch_size=2)

    cpu = evaluate(*nets())
    monkeypatch.setattr(compute, "module_device",
                        lambda m: CUDA if getattr(next(m.parameters()), "placed", None) else torch.device("cpu"))
    pose, har = (net.to(CUDA) for net in nets())
    pose.register_forward_pre_hook(lambda module, args: check(pose, args))
    har.register_forward_pre_hook(lambda module, args: check(har, args[:1]))
    gpu = evaluate(pose, har)
    assert checked["batches"] == 3 + 2
    np.testing.assert_array_equal(cpu[0], gpu[0])
    np.testing.assert_array_equal(cpu[1], gpu[1])

"""The CLIP video-text classifier: loading the tiny CLIP from its files, prompts, which parameters
train per variant, the cached-feature path (identical logits), and the video sampling/augmentation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actlab import device as compute
from actlab.families.ak import aktoy
from actlab.families.ak import job as ak_job
from actlab.families.ak.model import (FullVision, ProjOnly, Temporal, VideoTextClassifier, load_clip, prompts,
                                      text_embeddings)
from actlab.families.ak.video import VideoSpec, augment, center_view, chunk_positions
from test_device_placement import CUDA, fake_cuda  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    config, weights = aktoy.write_clip_model(tmp_path_factory.mktemp("clip"), seed=0)
    return load_clip(aktoy.CLIP_NAME, weights, config), weights


def test_tiny_clip_loads_from_its_file_with_the_bundled_tokenizer(clip):
    (model, tokenizer), weights = clip
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(model.state_dict()["visual.proj"], saved["visual.proj"])
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))
    assert tokenizer(["a video of an animal eating"]).shape == (1, 32)


def test_prompts_per_template():
    action, segment = ["Eating", "Flying"], ["head", "tail"]
    assert prompts("name", action, segment) == ["Eating", "Flying"]
    assert prompts("video", action, segment) == ["a video of an animal eating", "a video of an animal flying"]
    assert prompts("with_segment", action, segment)[1] == "a video of an animal flying, a rare behaviour"
    assert prompts("with_description", action, segment, ["d0", "d1"])[0] == "a video of an animal eating: d0"
    with pytest.raises(ValueError):
        prompts("with_description", action, segment)


def test_text_embeddings_are_normalised_and_cached(clip, tmp_path):
    (model, tokenizer), _ = clip
    texts = prompts("video", ["eating", "flying", "running"], ["head"] * 3)
    emb = text_embeddings(model, tokenizer, texts, "sha", tmp_path)
    assert emb.shape == (3, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert len(list(tmp_path.glob("text_*.pt"))) == 1
    torch.testing.assert_close(text_embeddings(model, tokenizer, texts, "sha", tmp_path), emb)


def classifier(clip, encoder_cls, **kw):
    (model, _), _ = clip
    import copy

    visual = copy.deepcopy(model.visual)
    text = torch.nn.functional.normalize(torch.randn(5, 32), dim=1)
    return VideoTextClassifier(encoder_cls(visual, **kw), text, model.logit_scale.item())


def trainable(m):
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_which_parameters_train(clip):
    proj = classifier(clip, ProjOnly)
    assert trainable(proj) == {"encoder.visual.proj", "encoder.visual.ln_post.weight", "encoder.visual.ln_post.bias",
                               "head.weight", "head.bias"}
    full = classifier(clip, FullVision)
    assert {n for n, _ in full.named_parameters()} == trainable(full)
    temporal = classifier(clip, Temporal, frames=8, embed_dim=32)
    assert all(not n.startswith("encoder.visual.") for n in trainable(temporal))
    assert "encoder.position" in trainable(temporal)
    torch.testing.assert_close(proj.head.weight, torch.eye(5))           # identity at the start


def test_cached_features_give_the_same_logits(clip):
    model = classifier(clip, ProjOnly).eval()
    video = torch.randn(3, 8, 3, 32, 32)
    full = model.logits(model(video))
    feats = model.encoder.frame_features(video.reshape(24, 3, 32, 32)).reshape(3, 8, -1)
    torch.testing.assert_close(model.logits(model.from_features(feats)), full, atol=1e-5, rtol=0)
    # and the encoder equals open_clip's own image embedding, averaged over frames
    own = model.encoder.visual(video.reshape(24, 3, 32, 32)).reshape(3, 8, -1).mean(1)
    torch.testing.assert_close(model.encoder(video), own, atol=1e-5, rtol=1e-5)


def test_logits_use_the_frozen_scale_and_head(clip):
    model = classifier(clip, ProjOnly)
    cos = torch.rand(2, 5)
    torch.testing.assert_close(model.logits(cos), 100.0 * cos, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.logits(cos, scale=30.0), 30.0 * cos, rtol=1e-5, atol=1e-4)
    assert not model.logit_scale.requires_grad


@pytest.mark.parametrize("loss", ["bce", "focal", "ldam", "eql"])
@pytest.mark.parametrize("encoder", ["proj", "vision", "temporal"])
def test_one_training_call_gives_the_loss_and_every_trainable_parameter_a_gradient(clip, encoder, loss):
    """What the job's loss_fn does: one call of the module (the DDP wrapper, under several ranks)
    for the logits, scored by `from_logits`: the same loss as `criterion(cos, y, model, epoch)`, and
    no trainable parameter without a gradient (DDP would fail on the next step)."""
    from actlab.families.ak.losses import BCELoss, EQLLoss, FocalLoss, LDAMDRWLoss

    cls, kw = {"proj": (ProjOnly, {}), "vision": (FullVision, {}),
               "temporal": (Temporal, {"frames": 8, "embed_dim": 32})}[encoder]
    model = classifier(clip, cls, **kw)
    counts = [50, 20, 8, 3, 1]
    criterion = {"bce": BCELoss(counts, 4), "focal": FocalLoss(counts, 4), "ldam": LDAMDRWLoss(counts, 4, drw_start=0),
                 "eql": EQLLoss(counts, 4, tail_max_count=10)}[loss]
    video, y = torch.randn(3, 8, 3, 32, 32), (torch.rand(3, 5) < 0.4).float()
    z = model(video=video, shift=criterion.shift(y), scale=criterion.scale, logits=True)
    value = criterion.from_logits(z, y, 1)
    torch.testing.assert_close(value, criterion(model(video), y, model, 1))
    value.backward()
    assert {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None} == set()


def test_chunk_positions():
    np.testing.assert_array_equal(chunk_positions(16, 8, 1)[:, 0], [1, 3, 5, 7, 9, 11, 13, 15])
    np.testing.assert_array_equal(chunk_positions(16, 8, 2), np.arange(16).reshape(8, 2))
    np.testing.assert_array_equal(chunk_positions(4, 8, 1)[:, 0], [0, 0, 1, 1, 2, 2, 3, 3])   # short clips repeat


def test_views_shapes_and_seeded_augmentation():
    spec = VideoSpec(frames=8, candidates=2, decode_size=40, image_size=32)
    frames = torch.randint(0, 256, (3, 8, 2, 40, 40, 3), dtype=torch.uint8)
    a = augment(frames, spec, torch.Generator().manual_seed(0))
    b = augment(frames, spec, torch.Generator().manual_seed(0))
    assert a.shape == (3, 8, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, augment(frames, spec, torch.Generator().manual_seed(1)))
    test = center_view(frames[:, :, :1], spec)
    assert test.shape == (3, 8, 3, 32, 32)


class _Clips(torch.utils.data.Dataset):
    """Stored test views as ClipDataset gives them: frames [T, 1, h, w, 3] uint8, labels [C]."""

    def __init__(self, n: int = 5, spec: VideoSpec = VideoSpec(frames=4, candidates=1)) -> None:
        g = torch.Generator().manual_seed(0)
        self.spec, self.labels = spec, np.eye(5, dtype=np.float32)[np.arange(n) % 5]
        self.frames = torch.randint(0, 256, (n, spec.frames, 1, 40, 48, 3), generator=g, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "labels": torch.from_numpy(self.labels[i]), "index": i}


def test_test_predictions_and_feature_cache_run_on_the_models_device(clip, fake_cuda, monkeypatch):
    """`predict` and the feature cache move every clip to where the model is (a model 'moved' to
    CUDA here: the tensors stay on the CPU, tagged), with the CPU run's logits and features; the
    features come back to the CPU for the loop."""
    check, checked = fake_cuda
    clips = _Clips()
    torch.manual_seed(0)
    model = classifier(clip, ProjOnly).eval()
    cpu = ak_job.predict(model, clips, clips.spec, 2), ak_job.FeatureDataset(clips, model, 2).feats
    monkeypatch.setattr(compute, "module_device",
                        lambda m: CUDA if getattr(next(m.parameters()), "placed", None) else torch.device("cpu"))
    real_view = ak_job.center_view

    def checked_view(frames, spec, view=0):
        check(model, [frames])
        return real_view(frames, spec, view)

    monkeypatch.setattr(ak_job, "center_view", checked_view)
    model.to(CUDA)
    gpu = ak_job.predict(model, clips, clips.spec, 2), ak_job.FeatureDataset(clips, model, 2).feats
    assert checked["batches"] == 2 * 3
    np.testing.assert_array_equal(cpu[0], gpu[0])
    assert torch.equal(cpu[1], gpu[1]) and gpu[1].device.type == "cpu"

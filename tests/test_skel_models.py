"""The skel models: SlowOnly shapes, the tiny open_clip text tower offline, the projection order,
ITM fusion, PACL embedders, momentum state in the state_dict (issue 14 §3)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actlab import device as compute
from actlab.errors import DataError
from actlab.families.skel.encoder import SlowOnly
from actlab.families.skel.model import ModelConfig, PaclEmbedder, SkelTextModel
from actlab.families.skel.text import TextTower
from actlab.families.skel.train import test_scores as skel_test_scores
from test_device_placement import CUDA, fake_cuda  # noqa: F401  (the fixture)

NAMES = ["drinking water", "eat meal/snack", "brushing teeth"]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_slowonly_toy_and_full_shapes():
    toy = SlowOnly(base=8, blocks=(1, 1, 1))
    assert toy(torch.zeros(2, 17, 16, 32, 32)).shape == (2, 128, 8, 4, 4)
    assert toy.frames(torch.zeros(2, 17, 16, 32, 32)).shape == (2, 8, 128)
    full = SlowOnly()          # base 32, blocks (4, 6, 3): 48 x 56 x 56 -> [B, 512, 24, 7, 7]
    assert full.out_channels == 512 and [len(s) for s in full.stages] == [4, 6, 3]
    assert full(torch.zeros(1, 17, 8, 16, 16)).shape == (1, 512, 4, 2, 2)   # strides T (1,1,2), H/W (2,2,2)


def test_tiny_text_tower_runs_offline_with_the_bundled_tokenizer(no_network):
    tower = TextTower(width=32, layers=2, heads=2, context_length=16, embed_dim=32)
    tokens = tower.tokenize(NAMES)
    assert tokens.shape == (3, 16)
    pooled, states, pad = tower(tokens)
    assert pooled.shape == (3, 32) and states.shape == (3, 16, 32)
    eot = tokens.argmax(-1)
    assert not pad[0, : eot[0] + 1].any() and pad[0, eot[0] + 1:].all()


def test_missing_clip_weights_name_key_and_path(tmp_path, no_network):
    with pytest.raises(DataError, match=r"paths.clip_text_weights: CLIP weights not found at .*nope.pt"):
        TextTower.pretrained("ViT-B-16", tmp_path / "nope.pt")


def test_projection_then_mean_equals_mean_then_projection():
    lin = torch.nn.Linear(12, 5)
    e = torch.randn(3, 7, 12)
    torch.testing.assert_close(lin(e).mean(1), lin(e.mean(1)), rtol=1e-5, atol=1e-6)


def _model(loss: str, **kw) -> SkelTextModel:
    torch.manual_seed(0)
    cfg = ModelConfig(loss=loss, base=4, blocks=(1, 1, 1), hidden=16, embed=8, queue_size=8, fusion_layers=1, **kw)
    return SkelTextModel(cfg, TextTower(width=32, layers=1, heads=2, context_length=16, embed_dim=32), NAMES)


def test_text_variant_embeddings_are_unit_norm_and_texts_encoded_per_unique_label():
    model = _model("itc").eval()
    v, e, frames = model.video(torch.rand(2, 17, 4, 16, 16))
    assert v.shape == (2, 8) and e.shape == (2, 2, 16) and frames.shape == (2, 2, 64)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2))
    t, states, pad, eot = model.encode_texts(torch.tensor([2, 0, 2]))
    torch.testing.assert_close(t[0], t[2])
    all_t = model.encode_texts()[0]
    torch.testing.assert_close(t, all_t[[2, 0, 2]])
    assert model.class_cosines(torch.rand(2, 17, 4, 16, 16)).shape == (2, 3)


def test_itm_head_scores_pairs_and_pacl_embedders():
    model = _model("itc_itm").eval()
    v, e, _ = model.video(torch.rand(2, 17, 4, 16, 16))
    _, states, pad, eot = model.encode_texts(torch.tensor([0, 1]))
    assert model.itm(states, pad, eot, e).shape == (2, 2)
    lin, res = PaclEmbedder(16, 8, "linear"), PaclEmbedder(16, 8, "residual_mlp")
    f = torch.randn(2, 3, 16)
    assert lin(f).shape == res(f).shape == (2, 3, 8)
    torch.testing.assert_close(res(f), res.main(f) + res.residual(f))
    assert sum(p.numel() for p in lin.parameters()) == 16 * 8 + 8
    pacl = _model("pacl", pacl_weighting="sigmoid10").eval()
    assert pacl.class_cosines(torch.rand(2, 17, 4, 16, 16)).abs().max() <= 1 + 1e-5


def test_momentum_model_and_queue_live_in_the_state_dict():
    model = _model("itc_mom")
    keys = model.state_dict().keys()
    assert {"queue.video", "queue.text", "queue.labels", "queue.pointer", "step"} <= set(keys)
    assert any(k.startswith("video_m.encoder.") for k in keys) and any(k.startswith("text_m.tower.") for k in keys)
    assert not any(p.requires_grad for p in model.video_m.parameters())
    with pytest.raises(ValueError, match="embedder"):
        PaclEmbedder(4, 4, "mlp")
    assert F.normalize(model.queue.video, dim=1).shape == (8, 8)


# -- device placement (docs/gpu.md): fake CUDA as in tests/test_device_placement.py --------------

def test_evaluation_runs_on_the_models_device_and_gives_the_cpu_scores(fake_cuda, monkeypatch):
    """`test_scores` moves every clip to where the model is (a model 'moved' to CUDA here: the
    tensors stay on the CPU, tagged), and the scores equal the plain CPU evaluation's."""
    check, checked = fake_cuda
    g = torch.Generator().manual_seed(0)
    clips = [{"heatmap": torch.rand(2, 17, 4, 16, 16, generator=g), "label": torch.tensor(i % 3)} for i in range(5)]
    cpu = skel_test_scores(_model("itc"), clips, batch_size=2)
    monkeypatch.setattr(compute, "module_device",
                        lambda m: CUDA if getattr(next(m.parameters()), "placed", None) else torch.device("cpu"))
    model = _model("itc").to(CUDA)
    model.video.register_forward_pre_hook(lambda module, args: check(model, args))
    gpu = skel_test_scores(model, clips, batch_size=2)
    assert checked["batches"] == 3
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a, b)


def test_keeping_the_used_token_rows_changes_neither_outputs_nor_gradients():
    """The tower keeps only its class names' token rows (a smaller checkpoint and optimizer step):
    the same pooled embeddings and states, and the kept rows get the full table's gradients."""
    import copy

    torch.manual_seed(0)
    tower = TextTower(width=32, layers=1, heads=2, context_length=16, embed_dim=32)
    full = copy.deepcopy(tower)
    tokens = tower.tokenize(NAMES)
    state = torch.get_rng_state()
    kept = tower.keep_tokens(tokens)
    assert torch.equal(torch.get_rng_state(), state)          # no draw: the rest of the model is built as before
    used = torch.unique(tokens)
    assert tower.token_embedding.weight.shape == (len(used), 32) and len(used) < 100
    assert torch.equal(kept.argmax(-1), tokens.argmax(-1))     # the end-of-text token is still the largest
    out, ref = tower(kept), full(tokens)
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
    out[0].square().sum().backward()
    ref[0].square().sum().backward()
    assert torch.equal(tower.token_embedding.weight.grad, full.token_embedding.weight.grad[used])
    assert not full.token_embedding.weight.grad[~torch.isin(torch.arange(49408), used)].any()
    frozen = copy.deepcopy(full).requires_grad_(False)
    frozen.keep_tokens(tokens)
    assert not frozen.token_embedding.weight.requires_grad

"""The feature cache (engine/feature_cache.py): a fixed backbone's features per chunk, keyed by
content, written atomically; a run gives the same records whether or not an entry is there."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from conftest import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf

from actlab.families.continual.data.clip_store import write_entry
from actlab.families.continual.data.user_streams import open_user_stream
from actlab.families.continual.engine import feature_cache as fc
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.frozen import Frozen
from actlab.families.continual.methods.label_window import LabelWindow
from actlab.families.continual.methods.replay import Replay
from actlab.families.continual.metrics.forgetting import ReexposureForgetting
from actlab.families.continual.metrics.online import OnlineMetrics

CPU = torch.device("cpu")
CLIPS = 14


def sgd(params, **kw):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, **kw)


@pytest.fixture(scope="module")
def stream(data_cfg, egotoy_splits):
    cfg = data_cfg.copy()
    cfg.max_clips = CLIPS
    return open_user_stream(cfg, "68", use_cache=False)


@pytest.fixture(scope="module")
def initial(data_cfg):
    torch.manual_seed(0)
    model = OmegaConf.load(REPO / "configs/continual/model/egotoy_small.yaml")
    cfg = OmegaConf.create({"data": data_cfg, "model": model})
    return instantiate(cfg.model)


# (method, online_forward, past evaluation): every kind of run the analysis calls fixed
FIXED = {
    "frozen_eval_past": (lambda: Frozen(), "eval", True),
    "frozen_bn_frozen_train": (lambda: Frozen(backbone_bn="frozen"), "train", False),
    "head_only_frozen_train": (lambda: Finetune(head_only=True, backbone_bn="frozen", optimizer=sgd,
                                                inner_loop_iters=2), "train", True),
    "head_only_frozen_eval": (lambda: Finetune(head_only=True, backbone_bn="frozen", optimizer=sgd), "eval", False),
    "label_window_past": (lambda: LabelWindow(window=3), "train", True),
}


def run(initial, stream, name, features_dir=None, use_features=True):
    make, online, past = FIXED[name]
    model = copy.deepcopy(initial)
    features = fc.BackboneFeatures(model, stream.dataset, stream.sha256, features_dir, CPU) if use_features else None
    tracker = ReexposureForgetting(window=6, eval_batch_size=4) if past else None
    result = run_stream(model, make(), stream.dataset, metrics=OnlineMetrics(8, 16), seed=3, batch_size=4,
                        online_forward=online, past_eval_every=1 if past else 0, tracker=tracker, features=features)
    return result, model, features


@pytest.mark.parametrize("name", sorted(FIXED))
def test_records_are_bit_equal_without_the_cache_with_a_cold_one_and_with_a_warm_one(initial, stream, name, tmp_path):
    plain, plain_model, _ = run(initial, stream, name, use_features=False)
    cold, cold_model, features = run(initial, stream, name, tmp_path)
    if not isinstance(FIXED[name][0](), LabelWindow):
        assert features.computed > 0
    features.save()
    warm, warm_model, again = run(initial, stream, name, tmp_path)
    assert again.computed == 0 and again.hits == features.computed + features.hits
    for other, model in ((cold, cold_model), (warm, warm_model)):
        pd.testing.assert_frame_equal(other.records, plain.records, check_exact=True)
        pd.testing.assert_frame_equal(other.forgetting, plain.forgetting, check_exact=True)
        assert other.summary == plain.summary
        for (k, a), b in zip(plain_model.state_dict().items(), model.state_dict().values()):
            assert torch.equal(a, b), k


def test_hindsight_from_the_cache_equals_the_evaluators_own_forward(initial, stream, tmp_path):
    model = copy.deepcopy(initial)
    own = StreamEvaluator(4, cache_features=False).logits(model, stream.sha256, stream.dataset)
    features = fc.BackboneFeatures(model, stream.dataset, stream.sha256, tmp_path, CPU)
    cached = StreamEvaluator(4, cache_features=False).logits(model, stream.sha256, stream.dataset, fixed=features)
    assert features.computed == 4                       # 14 clips in chunks of 4
    for k in own:
        assert torch.equal(own[k], cached[k]), k
    model.verb_head.weight.data += 1                    # the heads may change: only the backbone is keyed
    assert features.still_valid()
    next(model.backbone.parameters()).data += 1         # a changed backbone never reads them
    assert not features.still_valid()
    assert fc.stream_eval_features(features, model, 4) is None


def test_a_run_whose_backbone_changes_never_uses_the_features(initial, stream, tmp_path):
    for method, online in ((Finetune(optimizer=sgd), "eval"),                               # full finetune
                           (Finetune(head_only=True, optimizer=sgd), "eval"),               # BN statistics adapt
                           (Frozen(), "train"),                                             # ... in train mode
                           (Replay(head_only=True, backbone_bn="frozen", optimizer=sgd), "train")):
        model = copy.deepcopy(initial)
        features = fc.BackboneFeatures(model, stream.dataset, stream.sha256, tmp_path, CPU)
        run_stream(model, method, stream.dataset, metrics=OnlineMetrics(8, 16), batch_size=4,
                   online_forward=online, features=features)
        assert features.computed == features.hits == 0, method.name


def test_the_key_names_weights_transform_stream_mode_and_precision(initial, stream, data_cfg, tmp_path):
    base = fc.FeatureKey(fc.backbone_key(initial), fc.stream_content_key(stream.dataset, stream.sha256),
                         "eval", "fp32", fc.kernels(CPU))
    changed = copy.deepcopy(initial)
    next(changed.backbone.parameters()).data[0] += 1e-6
    assert fc.backbone_key(changed) != base.backbone
    buffers = copy.deepcopy(initial)
    [m for m in buffers.backbone.modules() if isinstance(m, torch.nn.BatchNorm3d)][0].running_mean += 1
    assert fc.backbone_key(buffers) != base.backbone
    heads = copy.deepcopy(initial)
    heads.verb_head.weight.data += 1
    assert fc.backbone_key(heads) == base.backbone      # features do not depend on the heads
    frozen = copy.deepcopy(initial)
    Frozen(backbone_bn="frozen").prepare(frozen, 0)
    assert fc.backbone_key(frozen) == base.backbone     # nor on whether statistics track

    def stream_key(**change):
        cfg = data_cfg.copy()
        cfg.max_clips = CLIPS
        for k, v in change.items():
            cfg[k] = v
        s = open_user_stream(cfg, change.pop("user", "68"), use_cache=False)
        return fc.stream_content_key(s.dataset, s.sha256)

    assert stream_key() == base.stream
    assert stream_key(crop_size=56) != base.stream                                 # the transform
    assert stream_key(pixels="float") != base.stream                                # the pixel path
    assert stream_key(std=[0.2, 0.2, 0.2]) != base.stream                           # the normalisation
    assert stream_key(max_clips=CLIPS - 1) != base.stream                           # the stream
    assert stream_key(user="265") != base.stream
    # a decode-cache entry gives the same tensors, so the same key
    cfg = data_cfg.copy()
    cfg.max_clips, cfg.cache_dir = CLIPS, str(tmp_path / "cache")
    write_entry(stream.dataset, stream.sha256, cfg.cache_dir)
    cached = open_user_stream(cfg, "68")
    assert type(cached.dataset).__name__ == "CachedClips"
    assert fc.stream_content_key(InMemoryClips(cached.dataset), cached.sha256) == base.stream
    digests = {base.digest, fc.FeatureKey(base.backbone, base.stream, "train", "fp32", base.kernels).digest,
               fc.FeatureKey(base.backbone, base.stream, "eval", "bf16", base.kernels).digest,
               fc.FeatureKey(base.backbone, base.stream, "eval", "fp32", "cuda:other").digest}
    assert len(digests) == 4
    assert fc.stream_content_key(torch.utils.data.TensorDataset(torch.zeros(2)), "x") is None


def written_entry(initial, stream, tmp_path):
    features = fc.BackboneFeatures(copy.deepcopy(initial), stream.dataset, stream.sha256, tmp_path, CPU)
    features([0, 1], False)
    features([2, 3], False)
    (path,) = features.save()
    return features, path


def test_a_corrupt_or_partial_entry_is_not_used(initial, stream, tmp_path):
    features, data = written_entry(initial, stream, tmp_path)
    meta = data.with_suffix(".json")
    expected = features([0, 1], False)

    def fresh():
        f = fc.BackboneFeatures(copy.deepcopy(initial), stream.dataset, stream.sha256, tmp_path, CPU)
        out = f([0, 1], False)
        assert torch.equal(out, expected)
        return f

    assert fresh().hits == 1
    raw = data.read_bytes()
    data.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))               # one flipped bit
    assert fresh().computed == 1
    data.write_bytes(raw[: len(raw) // 2])                          # truncated
    assert fresh().computed == 1
    data.write_bytes(raw)
    meta.unlink()                                                   # the .json is written last
    assert fresh().computed == 1


def test_writes_are_atomic_and_merge(initial, stream, tmp_path, monkeypatch, capsys):
    def new():
        return fc.BackboneFeatures(copy.deepcopy(initial), stream.dataset, stream.sha256, tmp_path, CPU)

    other = new()
    other([4, 5, 6], False)                                         # read the (absent) entry before the write
    features, data = written_entry(initial, stream, tmp_path)
    assert "feature cache: 2 chunks, 4 rows" in capsys.readouterr().out    # the size, before writing
    before = data.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(fc, "atomic_write_bytes", crash)            # dies writing the .pt
    with pytest.raises(OSError):
        other.save()
    assert sorted(p.name for p in data.parent.iterdir()) == [data.with_suffix(".json").name, data.name]
    assert data.read_bytes() == before and set(new().entries["eval"].load().chunks) == {(0, 1), (2, 3)}
    monkeypatch.undo()
    monkeypatch.setattr(fc, "atomic_write_json", crash)             # dies between the .pt and the .json
    with pytest.raises(OSError):
        other.save()
    monkeypatch.undo()
    assert data.read_bytes() != before                              # new .pt under the old .json: not used
    assert new().entries["eval"].read() == {}
    other.save()                                                    # merges whatever is on disk with its own
    features.entries["eval"].new = 1
    features.save()
    assert set(new().entries["eval"].read()) == {(0, 1), (2, 3), (4, 5, 6)}


def test_a_changed_backbone_is_not_saved(initial, stream, tmp_path):
    model = copy.deepcopy(initial)
    features = fc.BackboneFeatures(model, stream.dataset, stream.sha256, tmp_path, CPU)
    features([0], False)
    next(model.backbone.parameters()).data += 1
    with pytest.raises(RuntimeError):
        features.save()
    assert not (tmp_path / "features").exists()


def test_label_window_reads_no_video(initial, stream):
    class NoVideo(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def stream_labels(self):
            return self.ds.stream_labels()

        def __getitem__(self, i):
            raise AssertionError("decoded a clip")

    model = copy.deepcopy(initial)
    out = run_stream(model, LabelWindow(window=3), NoVideo(stream.dataset), metrics=OnlineMetrics(8, 16), batch_size=4)
    ref = run_stream(model, LabelWindow(window=3), stream.dataset, metrics=OnlineMetrics(8, 16), batch_size=4)
    pd.testing.assert_frame_equal(out.records, ref.records, check_exact=True)


# -- the jobs: a frozen reference and a head-only run with frozen statistics, with and without the cache

@pytest.mark.slow
def test_stream_and_transfer_jobs_give_the_same_results_with_and_without_the_feature_cache(stream_overrides,
                                                                                          tmp_path, capsys):
    import json

    from conftest import compose

    from actlab.families.continual import artifacts
    from actlab.families.continual.engine import stream_job, transfer_job
    from actlab.results.store import iter_runs

    shared = tmp_path / "shared_cache"
    methods = {"frozen": ["method=frozen", "group=fc_frozen"],
               "head_only": ["method=finetune", "method.head_only=true", "method.backbone_bn=frozen", "group=fc_head"]}

    def sweep(root, cache):
        over = [o for o in stream_overrides if not o.startswith("paths.root")] + [f"paths.root={root}"]
        for name, method in methods.items():
            for user in ("68", "265"):
                stream_job.run(compose("stream", [*over, f"user={user}", "experiment=egotoy_main", "data.max_clips=10",
                                                  *method, "wandb.mode=disabled", f"data.cache_dir={cache}",
                                                  "submitted=20260101T000000Z"]))
        assert transfer_job.run(compose("transfer", [f"paths.root={root}", "experiment=egotoy_main", "mode=all",
                                                     f"data.cache_dir={cache}"])) == 4
        out = {}
        for run in iter_runs(root / "results"):
            key = (run.labels.get(artifacts.VARIANT), run.identity.unit)
            transfer = {p.stem: json.loads(p.read_text())["metrics"] for p in (run.folder / "transfer").glob("*.json")}
            out[key] = (pd.read_parquet(run.folder / artifacts.PREDICTIONS),
                        pd.read_parquet(run.folder / artifacts.FORGETTING), transfer)
        return out

    plain = sweep(tmp_path / "a", "null")
    assert "feature cache:" not in capsys.readouterr().out
    cold = sweep(tmp_path / "b", shared)
    assert "feature cache:" in capsys.readouterr().out                 # entries written, sizes printed
    written = sorted(p.name for p in shared.glob("features/*/*.pt"))
    warm = sweep(tmp_path / "c", shared)
    assert "feature cache:" not in capsys.readouterr().out             # every chunk was there: nothing to write
    assert sorted(p.name for p in shared.glob("features/*/*.pt")) == written
    assert len(plain) == 4 and plain.keys() == cold.keys() == warm.keys()
    for key, (records, forgetting, transfer) in plain.items():
        for other in (cold, warm):
            pd.testing.assert_frame_equal(other[key][0], records, check_exact=True)
            pd.testing.assert_frame_equal(other[key][1], forgetting, check_exact=True)
            assert other[key][2] == transfer, key

"""Transfer evaluation: shared-backbone feature caching gives exactly the full forward's results."""
from __future__ import annotations

import torch
from test_engine_loop import Clips, sgd, tiny_model, NN, NV

from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator, backbone_hash
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.metrics.evaluate import score
from actlab.families.continual.metrics.online import OnlineMetrics


def head_only_models(n: int = 3):
    """n head-only finetuned models of one pretrained network, each on another user's stream
    (batch-norm statistics frozen: the bit-identical backbone the feature cache shares)."""
    models = []
    for user in range(n):
        model = tiny_model(seed=0)
        run_stream(model, Finetune(optimizer=sgd, head_only=True, backbone_bn="frozen"), Clips(seed=user),
                   metrics=OnlineMetrics(NV, NN), batch_size=4)
        models.append(model)
    return models


def full_forward(model, dataset) -> dict:
    model.eval()
    with torch.no_grad():
        batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
        out = model(batch["video"])
    return score(out["verb"], out["noun"], batch["verb"], batch["noun"], prefix="transfer")


def test_cached_features_give_the_full_forward_results_with_one_backbone_pass_per_stream():
    models = head_only_models()
    assert len({backbone_hash(m) for m in models}) == 1          # the backbone never changed
    heads = [m.verb_head.weight for m in models]                   # the heads did change, apart
    assert not any(torch.equal(a, b) for i, a in enumerate(heads) for b in heads[i + 1:])
    streams = {f"s{j}": Clips(seed=10 + j) for j in range(3)}
    cached = StreamEvaluator(batch_size=4, cache_features=True)
    for model in models:
        for key, dataset in streams.items():
            assert cached.evaluate(model, key, dataset, prefix="transfer") == full_forward(model, dataset)
    assert cached.feature_passes == len(streams)                  # not len(models) * len(streams)


def test_a_model_with_another_backbone_never_receives_cached_features():
    frozen, tuned = tiny_model(seed=0), tiny_model(seed=0)
    run_stream(tuned, Finetune(optimizer=sgd), Clips(seed=1), metrics=OnlineMetrics(NV, NN), batch_size=4)
    stream = Clips(seed=5)
    evaluator = StreamEvaluator(batch_size=4, cache_features=True)
    evaluator.evaluate(frozen, "s", stream)
    assert evaluator.evaluate(tuned, "s", stream, prefix="transfer") == full_forward(tuned, stream)
    assert evaluator.feature_passes == 2

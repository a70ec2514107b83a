"""SGD recipe (Nesterov whenever momentum > 0) and which batch-norm statistics move (head-only,
frozen network), as upstream; actlab's bit-identical frozen backbone stays an option."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from conftest import REPO
from test_engine_loop import NN, NV, Clips, sgd, tiny_model
from test_engine_transfer import full_forward

from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.engine.transfer import StreamEvaluator, backbone_hash
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.frozen import Frozen
from actlab.families.continual.metrics.online import OnlineMetrics


def method_from_config(name: str, *overrides: str):
    with initialize_config_dir(str(REPO / "configs" / "continual" / "method"), version_base="1.3"):
        return instantiate(compose(name, overrides=list(overrides)))


# -- Nesterov ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["finetune", "iid_finetune", "replay"])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.3, True), (0.6, True), (0.9, True)])
def test_the_shipped_sgd_uses_nesterov_whenever_momentum_is_positive(name, momentum, nesterov):
    method = method_from_config(name, f"momentum={momentum}")
    group = method.build_optimizer(tiny_model()).param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (momentum, nesterov)


def test_nesterov_can_be_switched_off_explicitly():
    method = method_from_config("finetune", "momentum=0.9", "nesterov=false")
    assert method.build_optimizer(tiny_model()).param_groups[0]["nesterov"] is False


def test_nesterov_without_momentum_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="method.nesterov"):
        Finetune(optimizer=sgd, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="method.nesterov"):
        Finetune(optimizer=sgd, nesterov="sometimes")


# -- batch-norm statistics ----------------------------------------------------------------------------

def bn_stats(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items() if "running" in k}


def backbone_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.named_parameters()}


def stream(model, method, seed: int = 0) -> None:
    run_stream(model, method, Clips(seed=seed), metrics=OnlineMetrics(NV, NN), batch_size=4)


def test_head_only_trains_the_heads_while_the_backbone_batch_norm_statistics_adapt():
    model = tiny_model()
    stats, weights, head = bn_stats(model), backbone_weights(model), model.verb_head.weight.clone()
    stream(model, Finetune(optimizer=sgd, head_only=True))
    assert all(torch.equal(weights[k], v) for k, v in model.backbone.named_parameters())
    assert not any(torch.equal(stats[k], v) for k, v in bn_stats(model).items())
    assert not torch.equal(head, model.verb_head.weight)


def test_head_only_with_frozen_batch_norm_keeps_the_backbone_bit_identical():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    stream(model, Finetune(optimizer=sgd, head_only=True, backbone_bn="frozen"))
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(model.verb_head.weight, tiny_model().verb_head.weight)


def test_the_frozen_network_keeps_its_weights_but_its_batch_norm_statistics_move_as_upstream():
    # Upstream's fixed network runs its (train-mode) online forward with frozen parameters only.
    model = tiny_model()
    params = {k: v.clone() for k, v in model.named_parameters()}
    stats = bn_stats(model)
    stream(model, Frozen())
    assert all(torch.equal(params[k], v) for k, v in model.named_parameters())
    assert not any(torch.equal(stats[k], v) for k, v in bn_stats(model).items())


def test_the_frozen_network_with_frozen_batch_norm_is_bit_identical():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stream(model, Frozen(backbone_bn="frozen"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_backbone_bn_is_checked_and_frozen_needs_a_frozen_backbone():
    with pytest.raises(ValueError, match="method.backbone_bn"):
        Frozen(backbone_bn="sometimes")
    with pytest.raises(ValueError, match="method.backbone_bn.*head_only"):
        Finetune(optimizer=sgd, backbone_bn="frozen")


def test_head_only_models_with_adapted_statistics_never_share_cached_features():
    # The transfer cache keys features by a hash of the backbone state, buffers included:
    # head-only models whose batch-norm statistics adapted to different streams differ.
    models = []
    for user in range(2):
        model = tiny_model(seed=0)
        stream(model, Finetune(optimizer=sgd, head_only=True), seed=user)
        models.append(model)
    assert backbone_hash(models[0]) != backbone_hash(models[1])
    evaluator = StreamEvaluator(batch_size=4, cache_features=True)
    target = Clips(seed=7)
    for model in models:
        assert evaluator.evaluate(model, "s", target, prefix="transfer") == full_forward(model, target)
    assert evaluator.feature_passes == 2

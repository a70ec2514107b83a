"""SlowFast input packing: which frames the slow and the fast pathway see (hand-computed)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from actlab.families.continual.models.factory import SlowFastBackbone


class Recorder(nn.Module):
    """Stands in for the SlowFast net: keeps the frame numbers each pathway receives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[int]] = []

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        self.seen = [p[0, 0, :, 0, 0].long().tolist() for p in pathways]
        return torch.zeros(pathways[0].shape[0], 1)


def frames(t: int) -> torch.Tensor:
    """[1, 1, T, 1, 1] whose frame k holds the value k."""
    return torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1)


@pytest.mark.parametrize("t,alpha,slow", [
    # linspace(0, 31, 8) = 0, 4.43, 8.86, 13.29, 17.71, 22.14, 26.57, 31 -> truncated
    (32, 4, [0, 4, 8, 13, 17, 22, 26, 31]),
    # linspace(0, 7, 2) = 0, 7
    (8, 4, [0, 7]),
    # linspace(0, 15, 4) = 0, 5, 10, 15
    (16, 4, [0, 5, 10, 15]),
])
def test_slow_pathway_is_linspace_rounded_down_as_packpathway(t, alpha, slow):
    net = Recorder()
    SlowFastBackbone(net, alpha)(frames(t))
    assert net.seen == [slow, list(range(t))]


def test_frame_count_must_divide_by_alpha():
    with pytest.raises(ValueError, match="alpha=4"):
        SlowFastBackbone(Recorder(), 4)(frames(30))

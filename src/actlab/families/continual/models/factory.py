"""Model builders used by the `configs/model/*.yaml` `_target_`s.

Backbones come from pytorchvideo's builders with their classification head removed and replaced
by a global average pool, so every backbone maps [B,C,T,H,W] to [B,D] and the verb/noun heads live
in `VideoClassifier` (the only place label-space sizes appear).
"""
from __future__ import annotations

import actlab.compat  # noqa: F401  (must precede every pytorchvideo import)

import torch
from pytorchvideo.models.slowfast import create_slowfast
from pytorchvideo.models.x3d import create_x3d
from torch import Tensor, nn

from actlab.families.continual.models.video import VideoClassifier


class PooledBackbone(nn.Module):
    """Runs pytorchvideo blocks in order, then averages over time and space -> [B,D]."""

    def __init__(self, blocks: nn.ModuleList) -> None:
        super().__init__()
        self.blocks = blocks

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3, 4))


class MotionChannels(nn.Module):
    """[B,C,T,H,W] -> [B,2C,T,H,W]: the frames plus their frame-to-frame differences.

    On egotoy the verb is a motion while each user's home is a static scene; explicit differences
    let a small model key on what moves instead of memorising the pretrain users' homes.
    """

    def forward(self, x: Tensor) -> Tensor:
        diff = torch.zeros_like(x)
        diff[:, :, 1:] = x[:, :, 1:] - x[:, :, :-1]
        return torch.cat([x, diff], dim=1)


class SlowFastBackbone(nn.Module):
    """SlowFast without its head, fed from one [B,C,T,H,W] tensor.

    The fast pathway sees all T frames, the slow one T / alpha frames at linspace(0, T-1, T/alpha)
    rounded down (upstream's PackPathway / UniformTemporalSubsampleRepeated; T = 32, alpha = 4:
    0, 4, 8, 13, 17, 22, 26, 31, not a stride of 4), so callers and data loaders never deal with
    a list of pathways.
    """

    def __init__(self, net: nn.Module, alpha: int) -> None:
        super().__init__()
        self.net = net
        self.alpha = int(alpha)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[2]
        if t % self.alpha:
            raise ValueError(f"SlowFast needs a frame count divisible by alpha={self.alpha}, got T={t}")
        # Computed on the CPU as upstream's data transform does, then moved: same float rounding.
        slow_idx = torch.linspace(0, t - 1, t // self.alpha).long().to(x.device)
        slow = x.index_select(2, slow_idx)
        return torch.flatten(self.net([slow, x]), 1)


def _x3d_width(stem_dim: int, width_factor: float) -> int:
    # Mirrors create_x3d's stage-width rule, so the feature size is known without a dummy forward.
    from pytorchvideo.layers.utils import round_width

    dim = stem_dim
    for _ in range(3):
        dim = round_width(dim, 2.0, divisor=8)
    return round_width(dim, width_factor)


def x3d_small(num_verbs: int, num_nouns: int, num_frames: int = 8, crop_size: int = 64,
              width_factor: float = 1.0, depth_factor: float = 0.2, stem_dim: int = 12,
              bottleneck_factor: float = 1.5, se_ratio: float = 0.0625,
              motion: bool = True, dropout: float = 0.5) -> VideoClassifier:
    """A small X3D for egotoy (3 x num_frames x crop x crop), fast enough for CPU streams.

    Defaults = configs/model/egotoy_small.yaml (depth_factor 0.2: one block per stage).

    `motion`: also feed frame differences (see MotionChannels) to the stem.
    """
    net = create_x3d(input_channel=6 if motion else 3, input_clip_length=num_frames,
                     input_crop_size=crop_size, width_factor=width_factor,
                     depth_factor=depth_factor, stem_dim_in=stem_dim,
                     bottleneck_factor=bottleneck_factor, se_ratio=se_ratio, model_num_class=1)
    # The last block is the X3D head (projection + classifier); drop it and pool instead.
    blocks = list(net.blocks)[:-1]
    backbone = PooledBackbone(nn.ModuleList(([MotionChannels()] if motion else []) + blocks))
    return VideoClassifier(backbone, _x3d_width(stem_dim, width_factor), num_verbs, num_nouns, dropout)


def slowfast_r101(num_verbs: int = 115, num_nouns: int = 478, alpha: int = 4,
                  dropout: float = 0.5) -> VideoClassifier:
    """SlowFast 8x8 R101 (Ego4D's recognition model): slow = T/alpha frames, fast = T frames."""
    # Fusion kernel 5 (pytorchvideo's default is 7): Ego4D's SlowFast 8x8 R101 (FUSION_KERNEL_SZ 5),
    # so released checkpoints load (models/slowfast_keys.py, docs/protocol.md).
    net = create_slowfast(model_depth=101, slowfast_fusion_conv_stride=(alpha, 1, 1),
                          slowfast_fusion_conv_kernel_size=(5, 1, 1),
                          head=None, head_pool=nn.AdaptiveAvgPool3d, head_output_size=(1, 1, 1))
    # Pooled slow (2048) + fast (2048 / beta=8) features, concatenated by PoolConcatPathway.
    feature_dim = 2048 + 2048 // 8
    return VideoClassifier(SlowFastBackbone(net, alpha), feature_dim, num_verbs, num_nouns, dropout)

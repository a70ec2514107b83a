"""PoseC3D's SlowOnly skeleton encoder (pyskl ResNet3dSlowOnly, joint heatmaps in), in plain torch.

Stem conv 1x7x7 stride 1 without pool; bottleneck stages of widths 4*base*(1, 2, 4) with
spatial strides (2,2,2) and temporal strides (1,1,2); stage 1 has no temporal kernel, stages 2-3
start each block with a 3x1x1 conv. Base 32 and blocks (4,6,3) give [B,512,T/2,H/8,W/8].
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
            relu: bool = True) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    layers = [nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: tuple[int, int, int], temporal: bool) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv_bn(cin, planes, (3, 1, 1) if temporal else (1, 1, 1))
        self.conv2 = conv_bn(planes, planes, (1, 3, 3), stride)
        self.conv3 = conv_bn(planes, cout, (1, 1, 1), relu=False)
        self.downsample = (conv_bn(cin, cout, (1, 1, 1), stride, relu=False)
                           if cin != cout or stride != (1, 1, 1) else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class SlowOnly(nn.Module):
    def __init__(self, in_channels: int = 17, base: int = 32, blocks: tuple[int, ...] = (4, 6, 3),
                 spatial_strides: tuple[int, ...] = (2, 2, 2), temporal_strides: tuple[int, ...] = (1, 1, 2),
                 temporal_kernel: tuple[bool, ...] = (False, True, True)) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, base, (1, 7, 7))
        stages, cin = [], base
        for i, n in enumerate(blocks):
            planes = base * 2 ** i
            layers = []
            for b in range(n):
                stride = (temporal_strides[i], spatial_strides[i], spatial_strides[i]) if b == 0 else (1, 1, 1)
                layers.append(Bottleneck(cin, planes, stride, temporal_kernel[i]))
                cin = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin
        # channels-last convolutions run 2-2.5x faster on CPU (oneDNN) for these few-channel 3D maps
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 17, T, H, W] -> [B, C, T', H', W']."""
        return self.stages(self.stem(x.contiguous(memory_format=torch.channels_last_3d)))

    def frames(self, x: Tensor) -> Tensor:
        """Per-frame features F [B, T', C]: the feature map's mean over H, W."""
        return self.forward(x).mean((3, 4)).transpose(1, 2)

"""The family's networks: the DeepPrior++ pose ResNet (optionally FiLM-conditioned on the action)
with its frozen PCA decoder, and the LSTM action classifier over pose sequences.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from actlab.families.hand.fpha import NUM_ACTIONS


def condition(labels: Tensor, p: float, generator: torch.Generator | None = None,
              num_classes: int = NUM_ACTIONS) -> Tensor:
    """The FiLM condition while training: one-hot GT action, replaced by the uniform 1/C vector
    with probability p per sample (`film.cond_dropout`; p = 1: the source's "equiprobable")."""
    a = F.one_hot(labels.long(), num_classes).float()
    if p > 0:
        # drawn on the loop's CPU generator (every device draws the same), applied where `a` is
        drop = (torch.rand(len(labels), generator=generator) < p).to(a.device)
        a[drop] = 1.0 / num_classes
    return a


class FiLM(nn.Module):
    """FiLM(x, a) = (1 + gamma) * x + beta, [gamma; beta] = W_f a + b_f, broadcast over H x W.

    Zero-initialised, so a conditioned network starts as the unconditioned one.
    """

    def __init__(self, width: int, cond_dim: int = NUM_ACTIONS) -> None:
        super().__init__()
        self.width = width
        self.generator = nn.Linear(cond_dim, 2 * width)
        nn.init.zeros_(self.generator.weight)
        nn.init.zeros_(self.generator.bias)

    def params(self, a: Tensor) -> tuple[Tensor, Tensor]:
        gamma, beta = self.generator(a).chunk(2, dim=1)
        return gamma, beta

    @staticmethod
    def apply(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return (1 + gamma.view(shape)) * x + beta.view(shape)

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        return self.apply(x, *self.params(a))


class Bottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1 C/4 -> BN-ReLU-conv3x3 C/4 (stride) -> BN-ReLU-conv1x1 C,
    projection skip on a change of shape. Conditioned: each BN without affine, then its FiLM."""

    def __init__(self, cin: int, cout: int, stride: int, film: bool) -> None:
        super().__init__()
        mid = cout // 4
        self.widths = (cin, mid, mid)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c, affine=not film) for c in self.widths)
        self.convs = nn.ModuleList([nn.Conv2d(cin, mid, 1, bias=False),
                                    nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
                                    nn.Conv2d(mid, cout, 1, bias=False)])
        self.skip = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                     if stride != 1 or cin != cout else None)

    def forward(self, x: Tensor, films: dict[int, tuple[Tensor, Tensor]] | None = None) -> Tensor:
        out = x
        shortcut = x
        for i, (bn, conv) in enumerate(zip(self.bns, self.convs)):
            out = bn(out)
            if films is not None:
                out = FiLM.apply(out, *films[self.widths[i]])
            out = F.relu(out)
            if i == 0 and self.skip is not None:
                shortcut = self.skip(out)      # pre-activation ResNet: the projection sees BN-ReLU(x)
            out = conv(out)
        return out + shortcut


class PoseNet(nn.Module):
    """1 x S x S crop -> 30 PCA coefficients (and, through the frozen decoder, 63 standardised coords)."""

    def __init__(self, decoder: nn.Linear, widths: Sequence[int] = (64, 128, 256, 256),
                 strides: Sequence[int] = (2, 2, 2, 1), blocks: int = 5, stem: int = 32, fc: int = 1024,
                 dropout: float = 0.3, input_size: int = 128, film: bool = False) -> None:
        super().__init__()
        self.film = film
        self.stem = nn.Conv2d(1, stem, 5, padding=2)
        self.groups = nn.ModuleList()
        cin = stem
        for w, s in zip(widths, strides):
            self.groups.append(nn.ModuleList(Bottleneck(cin if b == 0 else w, w, s if b == 0 else 1, film)
                                             for b in range(blocks)))
            cin = w
        self.bn = nn.BatchNorm2d(cin)
        side = input_size // 2
        for s in strides:
            side = (side - 1) // s + 1
        self.fc1 = nn.Linear(cin * side * side, fc)
        self.fc2 = nn.Linear(fc, fc)
        self.out = nn.Linear(fc, decoder.in_features)
        self.dropout = nn.Dropout(dropout)
        self.decoder = decoder
        if film:
            # one generator per (group, width), shared by the group's blocks; and one after FC1, FC2
            self.film_gens = nn.ModuleList(
                nn.ModuleDict({str(c): FiLM(c) for c in sorted({c for blk in g for c in blk.widths})})
                for g in self.groups)
            self.film_fc = nn.ModuleList([FiLM(fc), FiLM(fc)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        decoder.requires_grad_(False)

    def forward(self, x: Tensor, a: Tensor | None = None) -> Tensor:
        """PCA coefficients [B, k]; `a` [B, 45] is the condition of a FiLM network."""
        if self.film and a is None:
            raise ValueError("a FiLM pose network needs the action condition `a`")
        out = F.max_pool2d(self.stem(x), 2)
        for gi, group in enumerate(self.groups):
            films = ({int(c): gen.params(a) for c, gen in self.film_gens[gi].items()} if self.film else None)
            for block in group:
                out = block(out, films)
        out = torch.flatten(F.relu(self.bn(out)), 1)
        out = self.fc1(out)
        if self.film:
            out = self.film_fc[0](out, a)
        out = self.dropout(F.relu(out))
        out = self.fc2(out)
        if self.film:
            out = self.film_fc[1](out, a)
        out = self.dropout(F.relu(out))
        return self.out(out)

    def keypoints(self, x: Tensor, a: Tensor | None = None) -> Tensor:
        """[B, 63] standardised keypoints through the frozen PCA decoder."""
        return self.decoder(self(x, a))


class ActionLSTM(nn.Module):
    """Pose sequence [B, T, D] (padded) + lengths -> log-probabilities [B, 45] from the last valid
    hidden state of a packed one-layer LSTM."""

    def __init__(self, input_dim: int = 63, hidden: int = 100, num_classes: int = NUM_ACTIONS) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def last_hidden(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return h[-1]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return F.log_softmax(self.head(self.last_hidden(x, lengths)), dim=1)

    def last_hidden_loop(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The same last state, one time step at a time (the reference the packed call must match)."""
        out = []
        for i in range(len(x)):
            state = None
            for t in range(int(lengths[i])):
                _, state = self.lstm(x[i:i + 1, t:t + 1], state)
            out.append(state[0][-1, 0])
        return torch.stack(out)

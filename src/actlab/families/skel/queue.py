"""The momentum queue: K features per modality with their labels and a write pointer (ALBEF).

Buffers, so the queue travels with the model's state_dict (checkpoints, resume)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from actlab.families.skel.losses import IGNORE_LABEL


def gather_across_ranks(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor all_gathered along dim 0 in rank order (rank 0's rows first) when torch.distributed
    is initialized with world size > 1, so every rank enqueues the same global batch; the tensors
    themselves otherwise. Detached: the queue holds no graph. Every rank's batch must have the same size."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tuple(t.detach() for t in tensors)
    gathered = []
    for t in tensors:
        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        gathered.append(torch.cat(parts))
    return tuple(gathered)


class MomentumQueue(nn.Module):
    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        g = torch.Generator().manual_seed(seed)
        # random unit vectors labelled IGNORE_LABEL: they are negatives of every class until overwritten
        self.register_buffer("video", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("text", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("labels", torch.full((size,), IGNORE_LABEL, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.video.shape[0]

    @property
    def ptr(self) -> int:
        return int(self.pointer)

    @torch.no_grad()
    def enqueue(self, video: Tensor, text: Tensor, labels: Tensor) -> None:
        """Write a (gathered, global) batch at the pointer; ptr <- (ptr + B) mod K."""
        b = video.shape[0]
        if self.size % b != 0:
            raise ValueError(f"momentum queue: size K={self.size} is not a multiple of the global batch {b} "
                             f"(choose K = n * batch, and drop the last partial batch)")
        p = self.ptr
        self.video[p:p + b] = video.detach().to(self.video)
        self.text[p:p + b] = text.detach().to(self.text)
        self.labels[p:p + b] = labels.to(self.labels)
        self.pointer.fill_((p + b) % self.size)

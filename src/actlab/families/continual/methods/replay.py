"""Experience replay: finetuning where each update also sees a batch drawn from a memory.

As upstream's Replay (docs/protocol.md, "Replay"): the memory (methods/memory.py) holds stream
indices, never tensors; `fetch` loads the clips. Every inner iteration draws a fresh memory batch
of min(batch size, |M|) samples, uniformly without replacement, and forwards the new and the
memory clips as ONE batch (batch norm sees both); the new rows of the first such forward are the
online predictions. Loss = (mean over new + mean over memory) / 2. While the memory is empty
(`empty_memory_loss`): `half` = (mean_new + 0) / 2, as upstream; `new_only` = mean_new (actlab's
earlier rule). Storage happens after the updates on a batch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from actlab.families.continual.data.records import action_key
from actlab.families.continual.methods.base import Batch, Fetch, Forward, cross_entropy
from actlab.families.continual.methods.finetune import Finetune
from actlab.families.continual.methods.memory import ReplayMemory

EMPTY_MEMORY_LOSS = ("half", "new_only")


class Replay(Finetune):
    name = "replay"
    batch_only_forwards = False     # its updates forward the batch together with memory samples

    def __init__(self, memory_size: int | str = 64, storage_policy: str = "reservoir",
                 empty_memory_loss: str = "half", **kw) -> None:
        super().__init__(**kw)
        if empty_memory_loss not in EMPTY_MEMORY_LOSS:
            raise ValueError(f"method.empty_memory_loss must be one of {EMPTY_MEMORY_LOSS}, "
                             f"got {empty_memory_loss!r}")
        self.empty_memory_loss = empty_memory_loss
        self.memory = ReplayMemory(memory_size, storage_policy)

    def prepare(self, model: nn.Module, seed: int) -> None:
        super().prepare(model, seed)
        self.memory = ReplayMemory(self.memory.size, self.memory.policy, seed)

    def train_forward(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Forward:
        n = len(batch["index"])
        past = self.memory.sample(n)
        if not past:
            logits = model(batch["video"])
            new = cross_entropy(logits, batch)
            return Forward(logits, new / 2 if self.empty_memory_loss == "half" else new)
        mem = fetch(past)
        joint = model(torch.cat([batch["video"], mem["video"]]))
        logits = {k: v[:n] for k, v in joint.items()}
        mem_logits = {k: v[n:] for k, v in joint.items()}
        mem_labels = {k: torch.as_tensor(mem[k]) for k in ("verb", "noun")}
        return Forward(logits, (cross_entropy(logits, batch) + cross_entropy(mem_logits, mem_labels)) / 2)

    def observe(self, batch: Batch) -> None:
        self.memory.store([(int(i), action_key(v, n)) for i, v, n in
                           zip(batch["index"].tolist(), batch["verb"].tolist(), batch["noun"].tolist())])

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])

"""Experience replay: finetuning where each update also sees a batch drawn from a memory.

The memory holds stream indices (and labels), never tensors; `fetch` loads the clips. Storage
policies: "fifo" (window of the most recent samples), "reservoir" (uniform over the stream so
far), "class_balanced" (class-balanced reservoir, Chrysakis & Moens 2020, classes = actions).
`size: full` keeps every past sample. Each inner iteration draws a fresh memory batch of the same
size as the new batch (without replacement; all of memory if it is smaller) and steps on
(mean loss new + mean loss memory) / 2.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from torch import Tensor, nn

from actlab.families.continual.data.records import action_key
from actlab.families.continual.methods.base import Batch, Fetch, cross_entropy
from actlab.families.continual.methods.finetune import Finetune

POLICIES = ("fifo", "reservoir", "class_balanced")


class ReplayMemory:
    """Stream indices kept under one storage policy; deterministic given its seed."""

    def __init__(self, size: int | str, policy: str, seed: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"method.storage_policy must be one of {POLICIES}, got {policy!r}")
        if size != "full" and (not isinstance(size, int) or size < 1):
            raise ValueError(f"method.memory_size must be a positive int or 'full', got {size!r}")
        self.size, self.policy = size, policy
        self.rng = np.random.default_rng(seed)
        self.items: list[tuple[int, str]] = []   # (stream index, action key)
        self.seen = 0
        self.seen_per_class: Counter[str] = Counter()

    @property
    def indices(self) -> list[int]:
        return [i for i, _ in self.items]

    def add(self, index: int, label: str) -> None:
        self.seen += 1
        self.seen_per_class[label] += 1
        if self.size == "full" or len(self.items) < self.size:
            self.items.append((index, label))
        elif self.policy == "fifo":
            self.items = self.items[1:] + [(index, label)]
        elif self.policy == "reservoir":
            j = int(self.rng.integers(self.seen))
            if j < self.size:
                self.items[j] = (index, label)
        else:
            self._add_class_balanced(index, label)

    def _add_class_balanced(self, index: int, label: str) -> None:
        counts = Counter(lbl for _, lbl in self.items)
        largest = max(counts.values())
        if counts.get(label, 0) < largest:
            # Not (one of) the largest classes: it takes the place of a random sample of a largest class.
            big = sorted(c for c, n in counts.items() if n == largest)
            victim_class = big[int(self.rng.integers(len(big)))]
            slots = [k for k, (_, lbl) in enumerate(self.items) if lbl == victim_class]
            self.items[slots[int(self.rng.integers(len(slots)))]] = (index, label)
        else:
            # Already a largest class: reservoir sampling within the class.
            mine = [k for k, (_, lbl) in enumerate(self.items) if lbl == label]
            if self.rng.random() < len(mine) / self.seen_per_class[label]:
                self.items[mine[int(self.rng.integers(len(mine)))]] = (index, label)

    def sample(self, n: int) -> list[int]:
        if len(self.items) <= n:
            return self.indices
        pick = self.rng.choice(len(self.items), size=n, replace=False)
        return [self.items[int(k)][0] for k in sorted(pick)]

    def state_dict(self) -> dict[str, Any]:
        return {"items": list(self.items), "seen": self.seen, "seen_per_class": dict(self.seen_per_class),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = [(int(i), str(lbl)) for i, lbl in state["items"]]
        self.seen = int(state["seen"])
        self.seen_per_class = Counter(state["seen_per_class"])
        self.rng.bit_generator.state = state["rng"]


class Replay(Finetune):
    name = "replay"

    def __init__(self, memory_size: int | str = 64, storage_policy: str = "reservoir", **kw) -> None:
        super().__init__(**kw)
        self.memory = ReplayMemory(memory_size, storage_policy)

    def prepare(self, model: nn.Module, seed: int) -> None:
        super().prepare(model, seed)
        self.memory = ReplayMemory(self.memory.size, self.memory.policy, seed)

    def loss(self, model: nn.Module, batch: Batch, fetch: Fetch) -> Tensor:
        new = cross_entropy(model(batch["video"]), batch)
        past = self.memory.sample(len(batch["index"]))
        if not past:
            return new
        mem = fetch(past)
        return (new + cross_entropy(model(mem["video"]), mem)) / 2

    def observe(self, batch: Batch) -> None:
        for i, v, n in zip(batch["index"].tolist(), batch["verb"].tolist(), batch["noun"].tolist()):
            self.memory.add(int(i), action_key(v, n))

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])

"""The replay memory: stream indices (and action keys) kept under one storage policy.

The memory never holds tensors; `Replay` loads the clips of a memory batch by index. It stores one
batch at a time, after the updates on that batch (`store`). Policies (docs/protocol.md, "Replay"):
  fifo                   upstream's FIFO: after batch b, the |M| samples before batch b (batch b
                         itself is not kept yet, so batch b+1 cannot replay it);
  reservoir              upstream's reservoir: the observed-sample counter advances by the batch
                         size before storing, and every sample of the batch draws against that total;
  class_balanced         upstream's hybrid_CBRS: one bin per action; a sample whose action is not
                         "full" evicts a random sample of the largest bin (ties: the first-inserted
                         bin), one of a full action does reservoir sampling within its own bin; an
                         action is full once its bin was the largest (never cleared). Once the
                         number of actions, counting the current batch's new ones, reaches |M|, the
                         bins are joined in first-seen order and plain reservoir takes over for good;
  fifo_window            actlab's earlier FIFO: the |M| most recent samples, the current batch included;
  reservoir_per_sample   actlab's earlier reservoir: the counter advances per sample;
  class_balanced_cm2020  actlab's earlier class-balanced reservoir (Chrysakis & Moens 2020): a sample
                         of a class that is not one of the largest replaces a random sample of a
                         random largest class; otherwise reservoir within its class.
`size: full` keeps every sample a policy would store. Random draws use the memory's own seeded
numpy generator (`integers(n)` where upstream calls `random.randrange(0, n)`).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

POLICIES = ("fifo", "reservoir", "class_balanced", "fifo_window", "reservoir_per_sample",
            "class_balanced_cm2020")

Item = tuple[int, str]          # (stream index, action key)


class ReplayMemory:
    """Stream indices kept under one storage policy; deterministic given its seed."""

    def __init__(self, size: int | str, policy: str, seed: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"method.storage_policy must be one of {POLICIES}, got {policy!r}")
        if size != "full" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"method.memory_size must be a positive int or 'full', got {size!r}")
        self.size, self.policy = size, policy
        self.capacity: float = float("inf") if size == "full" else float(size)
        self.rng = np.random.default_rng(seed)
        self.slots: list[Item] = []                 # the memory, except class_balanced before its switch
        self.class_bins: dict[str, list[Item]] = {}  # class_balanced: action -> its bin, first-seen order
        self.switched = False                       # class_balanced: plain reservoir since then
        self.full_classes: set[str] = set()
        self.pending: list[Item] = []               # fifo: the last batch, stored when the next one is
        self.seen = 0
        self.seen_per_class: Counter[str] = Counter()

    # -- contents -------------------------------------------------------------------------------
    @property
    def items(self) -> list[Item]:
        if self.policy == "class_balanced" and not self.switched:
            return [it for bin_ in self.class_bins.values() for it in bin_]
        return list(self.slots)

    @property
    def indices(self) -> list[int]:
        return [i for i, _ in self.items]

    @property
    def bins(self) -> dict[str, list[int]]:
        """class_balanced before its switch: action -> stream indices of its bin."""
        return {a: [i for i, _ in bin_] for a, bin_ in self.class_bins.items()}

    def sample(self, n: int) -> list[int]:
        """A memory batch: n stream indices uniformly without replacement (all of a smaller memory)."""
        items = self.items
        if len(items) <= n:
            return [i for i, _ in items]
        pick = self.rng.choice(len(items), size=n, replace=False)
        return [items[int(k)][0] for k in sorted(pick)]

    # -- storage --------------------------------------------------------------------------------
    def store(self, batch: list[Item]) -> None:
        """Store one batch (after the updates on it)."""
        if self.policy == "fifo":
            self.slots = self._last(self.slots + self.pending)
            self.pending = list(batch)
        elif self.policy == "fifo_window":
            self.slots = self._last(self.slots + list(batch))
        elif self.policy == "reservoir":
            self.seen += len(batch)
            self._reservoir(self.slots, batch, self.capacity, self.seen)
        elif self.policy == "reservoir_per_sample":
            for item in batch:
                self.seen += 1
                self._reservoir(self.slots, [item], self.capacity, self.seen)
        elif self.policy == "class_balanced":
            self.seen += len(batch)
            self._store_hybrid_cbrs(batch)
        else:
            for item in batch:
                self._store_cm2020(item)

    def _last(self, items: list[Item]) -> list[Item]:
        return items if self.size == "full" else items[-int(self.size):]

    def _reservoir(self, memory: list[Item], batch: list[Item], limit: float, seen: int) -> None:
        """Fill up to `limit`, then each sample replaces slot j when a draw j < limit, j in [0, seen)."""
        for item in batch:
            if len(memory) < limit:
                memory.append(item)
            else:
                j = int(self.rng.integers(seen))
                if j < limit:
                    memory[j] = item

    def _store_hybrid_cbrs(self, batch: list[Item]) -> None:
        for _, action in batch:
            self.class_bins.setdefault(action, [])
        if self.switched or len(self.class_bins) >= self.capacity:
            if not self.switched:
                self.slots = self.items
                self.class_bins, self.switched = {}, True
            self._reservoir(self.slots, batch, self.capacity, self.seen)
            return
        for item in batch:
            action = item[1]
            self.seen_per_class[action] += 1
            if sum(len(b) for b in self.class_bins.values()) < self.capacity:
                self.class_bins[action].append(item)
                continue
            # max() keeps the first of equal bins: ties go to the first-inserted action.
            largest = max(self.class_bins, key=lambda a: len(self.class_bins[a]))
            self.full_classes.add(largest)
            if action not in self.full_classes:
                victims = self.class_bins[largest]
                del victims[int(self.rng.integers(len(victims)))]
                self.class_bins[action].append(item)
            else:
                own = self.class_bins[action]
                self._reservoir(own, [item], len(own), self.seen_per_class[action])

    def _store_cm2020(self, item: Item) -> None:
        label = item[1]
        self.seen += 1
        self.seen_per_class[label] += 1
        if len(self.slots) < self.capacity:
            self.slots.append(item)
            return
        counts = Counter(lbl for _, lbl in self.slots)
        largest = max(counts.values())
        if counts.get(label, 0) < largest:
            big = sorted(c for c, n in counts.items() if n == largest)
            victim_class = big[int(self.rng.integers(len(big)))]
            slots = [k for k, (_, lbl) in enumerate(self.slots) if lbl == victim_class]
            self.slots[slots[int(self.rng.integers(len(slots)))]] = item
        else:
            mine = [k for k, (_, lbl) in enumerate(self.slots) if lbl == label]
            if self.rng.random() < len(mine) / self.seen_per_class[label]:
                self.slots[mine[int(self.rng.integers(len(mine)))]] = item

    # -- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"slots": list(self.slots), "class_bins": [[a, list(b)] for a, b in self.class_bins.items()],
                "switched": self.switched, "full_classes": sorted(self.full_classes),
                "pending": list(self.pending), "seen": self.seen,
                "seen_per_class": dict(self.seen_per_class), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def items(rows: list) -> list[Item]:
            return [(int(i), str(a)) for i, a in rows]

        self.slots = items(state["slots"])
        self.class_bins = {str(a): items(b) for a, b in state["class_bins"]}
        self.switched = bool(state["switched"])
        self.full_classes = set(state["full_classes"])
        self.pending = items(state["pending"])
        self.seen = int(state["seen"])
        self.seen_per_class = Counter(state["seen_per_class"])
        self.rng.bit_generator.state = state["rng"]

"""Replay storage policies (methods/memory.py): golden cases worked out by hand.

The memory stores one batch at a time, after the updates on that batch (`store`). Where a policy
draws random numbers, a scripted generator stands in for the memory's rng: it returns the stated
values and records the upper bound of every draw, so a test pins both the decisions and the
structure of the draws (how many, against which total), which is what must match upstream.
"""
from __future__ import annotations

import numpy as np
import pytest

from actlab.families.continual.methods.memory import POLICIES, ReplayMemory


class ScriptedRng:
    """Stands in for numpy's Generator: `integers(high)` returns the next scripted value."""

    def __init__(self, values: list[int]) -> None:
        self.values, self.highs = list(values), []

    def integers(self, high: int) -> int:
        self.highs.append(int(high))
        value = self.values.pop(0)
        assert 0 <= value < high
        return value


def batch(start: int, labels: str) -> list[tuple[int, str]]:
    """Consecutive stream indices from `start`, one per character of `labels` (the action keys)."""
    return [(start + k, label) for k, label in enumerate(labels)]


def scripted(size, policy: str, values: list[int]) -> tuple[ReplayMemory, ScriptedRng]:
    memory = ReplayMemory(size, policy, seed=0)
    memory.rng = ScriptedRng(values)
    return memory, memory.rng


# -- FIFO ---------------------------------------------------------------------------------------

def test_fifo_holds_the_samples_before_the_current_batch():
    # M = 4, batches of 4: batch b is stored only once batch b+1 has been seen, so after batch b
    # the memory is the 4 indices before min(batch b) = 4b: batch 1 replays nothing, batch 2
    # replays batch 0, never the batch it has just seen.
    memory = ReplayMemory(4, "fifo")
    after = []
    for b in range(4):
        memory.store(batch(4 * b, "aaaa"))
        after.append(memory.indices)
    assert after == [[], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_fifo_with_a_memory_larger_than_a_batch_keeps_the_last_m_before_the_batch():
    # M = 6: after batch 2 (indices 8..11) the memory is range(8 - 6, 8) = 2..7.
    memory = ReplayMemory(6, "fifo")
    for b in range(3):
        memory.store(batch(4 * b, "abab"))
    assert memory.indices == [2, 3, 4, 5, 6, 7]


def test_fifo_window_keeps_todays_variant_that_includes_the_current_batch():
    # The earlier actlab FIFO: after batch b the window ends with batch b itself.
    memory = ReplayMemory(4, "fifo_window")
    memory.store(batch(0, "aaaa"))
    assert memory.indices == [0, 1, 2, 3]
    memory.store(batch(4, "aaaa"))
    assert memory.indices == [4, 5, 6, 7]


def test_full_fifo_keeps_every_sample_before_the_current_batch():
    memory = ReplayMemory("full", "fifo")
    for b in range(3):
        memory.store(batch(4 * b, "abcd"))
    assert memory.indices == list(range(8))


# -- reservoir ------------------------------------------------------------------------------------

def test_reservoir_advances_the_counter_by_the_batch_size_before_storing():
    # M = 2. Batch 0 (0..3): the counter becomes 4 before storing; 0 and 1 fill the memory
    # without a draw; 2 and 3 each draw against 4: 1 -> slot 1 = 2; 3 >= M -> dropped.
    # Batch 1 (4..7): counter 8; draws 0 -> slot 0 = 4; 5, 7 -> dropped; 1 -> slot 1 = 7.
    memory, rng = scripted(2, "reservoir", [1, 3, 0, 5, 7, 1])
    memory.store(batch(0, "aaaa"))
    assert memory.indices == [0, 2]
    memory.store(batch(4, "aaaa"))
    assert memory.indices == [4, 7]
    assert rng.highs == [4, 4, 8, 8, 8, 8]


def test_reservoir_per_sample_keeps_todays_per_sample_counter():
    # The counter advances per sample: 2 draws against 3 (1 -> slot 1), 3 against 4 (3: dropped),
    # 4 against 5 (0 -> slot 0), 5 against 6 and 6 against 7 (dropped), 7 against 8 (1 -> slot 1).
    memory, rng = scripted(2, "reservoir_per_sample", [1, 3, 0, 5, 6, 1])
    memory.store(batch(0, "aaaa"))
    memory.store(batch(4, "aaaa"))
    assert rng.highs == [3, 4, 5, 6, 7, 8]
    assert memory.indices == [4, 7]


# -- class-balanced (upstream's hybrid_CBRS) --------------------------------------------------------

def test_class_balanced_follows_hybrid_cbrs_decisions():
    memory, rng = scripted(4, "class_balanced", [1, 0, 0, 0, 0, 11, 3, 2])
    # Batch 0 (0..3) "aabb": memory not full -> every sample appended, no draw.
    memory.store(batch(0, "aabb"))
    assert memory.bins == {"a": [0, 1], "b": [2, 3]}
    # Batch 1 (4..7) "cbac": c is registered (3 actions < M = 4, no switch).
    #   4 c: largest = tie a(2) / b(2) -> a, the first inserted; a marked full; c is not full ->
    #        drop a random sample of a: draw 1 of 2 -> a loses index 1; c = [4].
    #   5 b: sizes a1 b2 c1 -> largest b, marked full before b is checked -> b is full ->
    #        reservoir within b against b's own count (3 seen): draw 0 < |b| = 2 -> b[0] = 5.
    #   6 a: largest still b; a stays full (never cleared, though it is the smallest now) ->
    #        reservoir within a, 3 a's seen: draw 0 < |a| = 1 -> a[0] = 6.
    #   7 c: largest b (2); c is not full -> drop from b: draw 0 of 2 -> b loses 5; c = [4, 7].
    memory.store(batch(4, "cbac"))
    assert memory.bins == {"a": [6], "b": [3], "c": [4, 7]}
    assert rng.highs == [2, 3, 3, 2]
    # Batch 2 (8..11) "dabc": d is the 4th action -> #actions >= M: switch for good to plain
    # reservoir; bins joined in first-seen order a, b, c -> [6, 3, 4, 7]; the global counter is
    # 12 (advanced by the batch size) and every sample draws against 12:
    #   8: 0 -> slot 0 = 8;  9: 11 -> dropped;  10: 3 -> slot 3 = 10;  11: 2 -> slot 2 = 11.
    memory.store(batch(8, "dabc"))
    assert memory.indices == [8, 3, 11, 10]
    assert rng.highs == [2, 3, 3, 2, 12, 12, 12, 12]


def test_class_balanced_never_switches_back_after_the_switch():
    memory, rng = scripted(2, "class_balanced", [3, 3, 7, 7, 7, 7])
    memory.store(batch(0, "abab"))        # 2 actions >= M = 2: plain reservoir from the start
    assert memory.indices == [0, 1] and rng.highs == [4, 4]   # 2, 3 draw 3 >= M: dropped
    memory.store(batch(4, "aaaa"))        # one action in this batch: still plain reservoir
    assert rng.highs == [4, 4, 8, 8, 8, 8]


def test_class_balanced_cm2020_keeps_todays_variant():
    # The earlier actlab policy: a sample of a class that is not (one of) the largest replaces a
    # random sample of a largest class, so every class keeps a slot.
    memory = ReplayMemory(5, "class_balanced_cm2020", seed=0)
    for start in range(0, 30, 5):
        memory.store(batch(start, "aaaaa"))
    memory.store(batch(30, "bbbcc"))
    assert len(memory.indices) == 5 and {label for _, label in memory.items} == {"a", "b", "c"}


# -- every policy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_respects_its_size_and_full_keeps_everything_before(policy):
    memory = ReplayMemory(5, policy, seed=0)
    full = ReplayMemory("full", policy, seed=0)
    for start in range(0, 36, 4):
        memory.store(batch(start, "aabc"))
        full.store(batch(start, "aabc"))
    assert len(memory.indices) == 5 and len(set(memory.indices)) == 5
    # "full" keeps every stored sample: all 36 (FIFO: all but the last batch, not stored yet)
    assert sorted(full.indices) == list(range(32 if policy == "fifo" else 36))


def test_a_memory_batch_is_drawn_without_replacement_and_is_all_of_a_small_memory():
    memory = ReplayMemory(8, "fifo_window", seed=0)
    memory.store(batch(0, "abc"))
    assert sorted(memory.sample(4)) == [0, 1, 2]                   # fewer than 4 stored: all
    memory.store(batch(3, "abcde"))
    draws = [memory.sample(4) for _ in range(20)]
    assert all(len(d) == 4 and len(set(d)) == 4 for d in draws)
    assert len({tuple(d) for d in draws}) > 1                      # redrawn on every call


def test_state_round_trip_continues_identically():
    a = ReplayMemory(4, "class_balanced", seed=3)
    for start in range(0, 12, 4):
        a.store(batch(start, "abca"))
    b = ReplayMemory(4, "class_balanced", seed=99)
    b.load_state_dict(a.state_dict())
    for start in range(12, 40, 4):
        a.store(batch(start, "dcba"))
        b.store(batch(start, "dcba"))
    assert a.indices == b.indices and a.sample(3) == b.sample(3)


def test_bad_sizes_and_policies_name_the_key():
    with pytest.raises(ValueError, match="memory_size"):
        ReplayMemory(0, "fifo")
    with pytest.raises(ValueError, match="storage_policy"):
        ReplayMemory(4, "lru")
    assert isinstance(ReplayMemory(4, "reservoir", seed=1).rng, np.random.Generator)

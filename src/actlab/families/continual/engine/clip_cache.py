"""Decoded clips kept in memory for the length of one job.

Replay draws memory batches and past evaluation re-reads the most recent 64 samples after every
update, so without a cache one stream decodes each clip many times. On egotoy a decoded clip is
~100 kB and a stream a few hundred clips; on Ego4D (32 x 224 x 224) a clip is ~19 MB, so the
Ego4D data config leaves this off. Items are cached in the process that reads them: use it with
`num_workers: 0` (each DataLoader worker would hold its own copy).
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class InMemoryClips(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def stream_labels(self) -> list[tuple[int, int]]:
        return self.dataset.stream_labels()

    def __getitem__(self, index: int) -> Any:
        index = int(index)
        if index not in self._items:
            self._items[index] = self.dataset[index]
        return self._items[index]

"""i.i.d. finetuning: finetuning on the same samples as the stream, in a seeded random order.

Definition: the stream's N samples are permuted once with `numpy.random.default_rng(seed)`
(seed = the run's seed); the permuted sequence is then processed exactly like a stream (batches
of `data.batch_size` consecutive entries, online predictions before the update). Online metrics
are therefore measured on the shuffled order; the label correlation of the real stream is gone.
"""
from __future__ import annotations

import numpy as np

from actlab.families.continual.methods.finetune import Finetune


class IIDFinetune(Finetune):
    name = "iid_finetune"

    def order(self, n: int, seed: int) -> list[int]:
        return np.random.default_rng(seed).permutation(n).tolist()

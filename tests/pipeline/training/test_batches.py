"""Mini-batches of a streamed table (pipeline/training/batches.py): every epoch a fresh order."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.training.batches import StreamBatches


def test_the_streamed_shuffle_draws_another_order_every_epoch():
    """Each epoch is a permutation of the training rows, and epoch 2's is not epoch 1's (SGD on the same
    order every epoch is a different, worse algorithm), while the same epoch repeats exactly."""
    chunks = [
        (np.arange(a, b, dtype=np.float32).reshape(-1, 1), np.arange(a, b)) for a, b in ((0, 40), (40, 100))
    ]
    empty = (np.empty((0, 1), np.float32), np.empty(0, np.int64))

    def order(epoch: int) -> list[int]:
        stream = StreamBatches(
            lambda: chunks, lambda x, y: (torch.from_numpy(x), torch.from_numpy(y)), 10, 7, 64, empty
        )
        return [v for step in stream.epoch(epoch) for v in step[1].tolist()]

    first, second = order(1), order(2)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second and order(1) == first

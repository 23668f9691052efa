"""Batches by token budget from length-sorted buckets (paper §5.1), in a seeded order.

Sorting by length puts sentences of similar length together, so a batch of N sentences padded
to its longest holds little padding; the batch size adapts so that N * longest <= budget.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def token_budget_batches(
    lengths: Sequence[int], batch_tokens: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Index batches whose padded size (count * longest) stays within `batch_tokens`.

    With `shuffle`, equal lengths are ordered at random and the batches are shuffled, both
    from `seed` alone, so the same seed gives the same batches.
    """
    rng = random.Random(seed)
    keys = [rng.random() for _ in lengths] if shuffle else range(len(lengths))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        # sorted ascending, so the newest sentence is the batch's longest
        if batch and (len(batch) + 1) * lengths[i] > batch_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def drop_long(pairs_lengths: Sequence[int], max_len: int) -> tuple[list[int], int]:
    """Indices of examples no longer than `max_len`, and how many were dropped."""
    keep = [i for i, n in enumerate(pairs_lengths) if n <= max_len]
    return keep, len(pairs_lengths) - len(keep)

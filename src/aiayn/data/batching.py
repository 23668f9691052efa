"""Batches by token budget from length-sorted buckets (paper §5.1), in a seeded order.

Sorting by length puts sentences of similar length together, so a batch of N sentences padded
to its longest holds little padding; the batch size adapts so that N * longest <= budget.
The work is numpy's, per batch rather than per sentence, so millions of sentences batch in
seconds and without a Python object per sentence.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def _uniforms(rng: random.Random, n: int) -> np.ndarray:
    """`n` draws of `rng.random()`, drawn by numpy from the same Mersenne Twister state (the
    generators share it and its doubles), and `rng` advanced past them."""
    _, state, _ = rng.getstate()
    numpy_rng = np.random.RandomState()
    numpy_rng.set_state(("MT19937", np.array(state[:-1], dtype=np.uint32), state[-1]))
    keys = numpy_rng.random_sample(n)
    _, words, pos, *_ = numpy_rng.get_state()
    rng.setstate((3, (*map(int, words), int(pos)), None))
    return keys


def token_budget_batches(
    lengths: Sequence[int] | np.ndarray, batch_tokens: int, seed: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Index batches whose padded size (count * longest) stays within `batch_tokens`; a
    sentence longer than the budget is a batch alone.

    With `shuffle`, equal lengths are ordered at random and the batches are shuffled, both
    from `seed` alone, so the same seed gives the same batches.
    """
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":  # a list of ints arrives as int64 already
        lengths = lengths.astype(np.int64)
    rng = random.Random(seed)
    if shuffle:
        order = np.lexsort((_uniforms(rng, len(lengths)), lengths))
    else:
        order = np.argsort(lengths, kind="stable")
    ordered = lengths[order]
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # ascending lengths: a batch of k from `start` is padded to ordered[start + k - 1], so
        # its cost k * ordered[start + k - 1] grows with k; take the largest k within budget
        shortest = int(ordered[start])
        most = batch_tokens // shortest + 1 if shortest else len(order)
        window = ordered[start : start + most]
        cost = np.arange(1, len(window) + 1) * window
        size = max(int(np.searchsorted(cost, batch_tokens, side="right")), 1)
        batches.append(order[start : start + size])
        start += size
    if shuffle:
        rng.shuffle(batches)
    return batches


def drop_long(lengths: Sequence[int] | np.ndarray, max_len: int) -> tuple[np.ndarray, int]:
    """Indices of examples no longer than `max_len`, and how many were dropped."""
    keep = np.flatnonzero(np.asarray(lengths) <= max_len)
    return keep, len(lengths) - len(keep)

"""The k largest entries of each row, as `Tensor.topk` finds them, in two cheap passes.

Beam search takes each beam's 2K best tokens from its log-probabilities over the vocabulary
at every step. torch's `topk` walks all V of them with a selection per row, which cost a beam
of 1,650 rows over 8,000 tokens more than its `log_softmax` (2-core Intel Xeon). Here the row
is cut into chunks of equal size and each chunk's maximum taken (one vectorised pass, like a
`max`): an entry among the row's k largest lies in one of the k chunks with the largest
maxima, since those k chunks hold k entries at least as large as any entry elsewhere. `topk`
then searches only those k chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor

# chunk sizes tried, best first (`python -m benchmarks.topk`): one must divide the row
CHUNKS = (64, 100, 80, 32, 125, 160, 50, 40, 200, 250, 256, 320, 400, 500, 512)


def row_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`x.topk(k, dim=1)` of a 2-D `x`: the same values, largest first, at the same indices
    (among equal values the order may differ)."""
    # x: (N, V) -> values (N, k), indices (N, k)
    size = chunk_size(x.size(1), k)
    if size is None or not x.is_contiguous():
        return x.topk(k, dim=1)
    return chunked_topk(x, k, size)


def chunked_topk(x: Tensor, k: int, size: int) -> tuple[Tensor, Tensor]:
    """`row_topk`'s two passes over chunks of `size`, which divides a contiguous `x`'s rows
    into at least k chunks."""
    # x: (N, V) -> values (N, k), indices (N, k)
    n, v = x.shape
    c = v // size
    which = x.view(n, c, size).amax(2).topk(k, dim=1).indices  # (N, k): chunks holding them
    # the chosen chunks as rows of one (N * c, size) table: index_select copies whole rows,
    # where `gather` would walk them entry by entry (1.4x the time of the whole selection)
    rows = (which + torch.arange(0, n * c, c, device=x.device)[:, None]).view(-1)
    found = x.view(n * c, size).index_select(0, rows).view(n, k * size)
    values, at = found.topk(k, dim=1)
    return values, which.gather(1, at // size) * size + at % size


def chunk_size(v: int, k: int) -> int | None:
    """The chunk size for rows of `v` entries, or None where two passes would not pay: no size
    in CHUNKS divides `v` into at least 4k chunks."""
    return next((s for s in CHUNKS if v % s == 0 and v // s >= 4 * k), None)

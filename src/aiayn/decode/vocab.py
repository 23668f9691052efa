"""A search step's scores over the vocabulary: each row's best tokens by log-probability.

The step's logits are turned into log-probabilities and searched a block of rows at a time,
in one buffer kept from step to step, instead of as a whole: over a few thousand beams the
(rows, vocabulary) log-probabilities are tens of megabytes, which, written out whole, were
fetched from main memory again by `topk` and, freshly allocated at every step, handed to and
taken back from the kernel (page faults). A block of BLOCK_ROWS rows stays in the CPU's
cache between the two. Each row's numbers are those of `log_softmax` and `topk` over the
whole tensor (the same kernels, row by row).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK_ROWS = 32  # 32 rows of an 8,000-token vocabulary: 1 MB of float32


class BestTokens:
    """For each row of a step's logits: its `each` highest log-probabilities over the whole
    vocabulary, and their tokens, with the `banned` tokens never among them (their
    probability still counts in every other token's)."""

    def __init__(self, banned: list[int]) -> None:
        self.banned = banned
        self.block: Tensor | None = None  # (BLOCK_ROWS, V) float32, kept between steps
        self.banned_ids: Tensor | None = None

    def __call__(self, logits: Tensor, each: int) -> tuple[Tensor, Tensor]:
        # logits: (N, V) -> values (N, each) float32, best first, and their token ids (N, each)
        n, v = logits.shape
        if self.block is None or self.block.shape[1] != v or self.block.device != logits.device:
            self.block = torch.empty(BLOCK_ROWS, v, device=logits.device)
            self.banned_ids = torch.tensor(self.banned, dtype=torch.long, device=logits.device)
        values = self.block.new_empty(n, each)
        tokens = torch.empty(n, each, dtype=torch.long, device=logits.device)
        for start in range(0, n, BLOCK_ROWS):
            rows = logits[start : start + BLOCK_ROWS].float()
            logp = self.block[: rows.size(0)]
            torch._log_softmax(rows, -1, False, out=logp)
            logp.index_fill_(1, self.banned_ids, float("-inf"))
            end = start + rows.size(0)
            torch.topk(logp, each, dim=1, out=(values[start:end], tokens[start:end]))
        return values, tokens

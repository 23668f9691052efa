"""Parallel text as token ids, and the padded tensors a translation model trains on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from aiayn.data.batching import drop_long, token_budget_batches


@dataclass
class TranslationBatch:
    src: Tensor  # (B, S) source ids then </s>, right-padded
    tgt_in: Tensor  # (B, T) <s> then target ids: the decoder's input
    tgt_out: Tensor  # (B, T) target ids then </s>: what each position predicts
    n_tokens: int  # real target tokens, the unit of loss and throughput

    def pin_memory(self) -> TranslationBatch:
        """In page-locked memory, for a DataLoader's copies to a GPU that overlap its work."""
        src, tgt_in, tgt_out = (x.pin_memory() for x in (self.src, self.tgt_in, self.tgt_out))
        return TranslationBatch(src, tgt_in, tgt_out, self.n_tokens)


def pad_to_tensor(rows: list[list[int]], pad_id: int) -> Tensor:
    """Right-pad lists of ids into a (B, longest) tensor."""
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class ParallelData:
    """Tokenized sentence pairs with </s> (and <s> for the decoder input) added."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], pad: int) -> None:
        self.src, self.tgt, self.pad = src, tgt, pad  # rows as made by `from_ids`

    @classmethod
    def from_ids(
        cls, src: list[list[int]], tgt: list[list[int]], bos: int, eos: int, pad: int
    ) -> ParallelData:
        return cls([[*s, eos] for s in src], [[bos, *t, eos] for t in tgt], pad)

    def __len__(self) -> int:
        return len(self.src)

    def lengths(self) -> np.ndarray:
        """Each pair's padded cost: its longer side (the decoder side counts <s> or </s> once)."""
        pairs = zip(self.src, self.tgt, strict=True)
        return np.fromiter((max(len(s), len(t) - 1) for s, t in pairs), np.int64, len(self))

    def without_long(self, max_len: int) -> tuple[ParallelData, int]:
        """The pairs whose sides fit in `max_len` tokens, and the count of those dropped."""
        keep, dropped = drop_long(self.lengths(), max_len)
        kept = ParallelData([self.src[i] for i in keep], [self.tgt[i] for i in keep], self.pad)
        return kept, dropped

    def batches(self, batch_tokens: int, seed: int, shuffle: bool = True) -> list[np.ndarray]:
        return token_budget_batches(self.lengths(), batch_tokens, seed, shuffle)

    def collate(self, indices: Sequence[int]) -> TranslationBatch:
        src = pad_to_tensor([self.src[i] for i in indices], self.pad)
        return shifted_batch(src, pad_to_tensor([self.tgt[i] for i in indices], self.pad), self.pad)


def shifted_batch(src: Tensor, tgt: Tensor, pad: int) -> TranslationBatch:
    """The batch of padded source rows (ids, </s>) and padded target rows (<s>, ids, </s>)."""
    # A shorter row keeps its </s> in tgt_in; it only precedes padding targets, which the
    # loss ignores, and the causal mask keeps it from every earlier position.
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    n_tokens = int((tgt_out != pad).sum())
    return TranslationBatch(src, tgt_in, tgt_out, n_tokens)

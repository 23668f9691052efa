"""Input noise for training: word dropout (Iyyer et al. 2015; Sennrich et al. 2016 for NMT)."""

from __future__ import annotations

import torch
from torch import Tensor


def word_dropout(ids: Tensor, p: float, unk_id: int, keep: Tensor) -> Tensor:
    """Replace each token by <unk> with probability p, except where `keep` is True."""
    # ids, keep: (B, T) -> (B, T)
    if p == 0.0:
        return ids
    hit = (torch.rand(ids.shape, device=ids.device) < p) & ~keep
    return ids.masked_fill(hit, unk_id)

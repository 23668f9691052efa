"""Input noise for training: word dropout (Iyyer et al. 2015; Sennrich et al. 2016 for NMT) and
BPE-dropout."""

from __future__ import annotations

import itertools
import json
import random

import torch
from torch import Tensor

from aiayn.data.tokenizer import TextTokenizer


def word_dropout(ids: Tensor, p: float, unk_id: int, keep: Tensor) -> Tensor:
    """Replace each token by <unk> with probability p, except where `keep` is True."""
    # ids, keep: (B, T) -> (B, T)
    if p == 0.0:
        return ids
    hit = (torch.rand(ids.shape, device=ids.device) < p) & ~keep
    return ids.masked_fill(hit, unk_id)


class BpeDropout:
    """BPE-dropout (Provilkov et al. 2020): a word's segmentation by a tokenizer's BPE merges,
    each merge that could apply skipped with probability p at each step, so that training sees
    a word also in the smaller pieces a word it has never seen is cut into. With p = 0 it is
    the tokenizer's own segmentation (a test holds it to `tokenizers`' encode)."""

    def __init__(self, tok: TextTokenizer) -> None:
        model = json.loads(tok.tok.to_str())["model"]
        if model["type"] != "BPE":
            raise ValueError(f"BPE-dropout needs a BPE tokenizer; the run's is {model['type']}")
        self.ranks = {tuple(m.split(" ") if isinstance(m, str) else m): i
                      for i, m in enumerate(model["merges"])}  # fmt: skip
        self.tok = tok

    def pieces(self, word: str, p: float, rng: random.Random) -> list[int]:
        """The ids of `word`'s pieces, merges skipped with probability `p` drawn from `rng`."""
        tok = self.tok.tok
        text = tok.normalizer.normalize_str(word) if tok.normalizer else word
        symbols = [s for part, _ in tok.pre_tokenizer.pre_tokenize_str(text)
                   for s in self.merged(list(part), p, rng)]  # fmt: skip
        ids = [tok.token_to_id(s) for s in symbols]
        return [self.tok.unk_id if i is None else i for i in ids]

    def merged(self, symbols: list[str], p: float, rng: random.Random) -> list[str]:
        """`symbols` merged by rank, each merge that could apply skipped with probability p."""
        while len(symbols) > 1:
            ranked = [
                (rank, i)
                for i, pair in enumerate(itertools.pairwise(symbols))
                if (rank := self.ranks.get(pair)) is not None and not (p and rng.random() < p)
            ]
            if not ranked:
                break
            _, i = min(ranked)
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        return symbols

"""A run's [decode] table: how its translations are searched, apart from what the model is."""

from __future__ import annotations

from dataclasses import dataclass

from aiayn.configfile import require

# Beam search keeps beam x vocabulary scores a sentence, and alpha is an exponent: past these
# a search only costs memory and overflows
MAX_BEAM = 64
MAX_ALPHA = 10.0
# how a finished hypothesis's log-probability is divided by its length |y| (its tokens, </s>
# counted): GNMT's ((5 + |y|) / 6) ** alpha (Wu et al. 2016), or |y| ** alpha as transformers'
# `length_penalty` and CTranslate2's count it, so that an export searches as aiayn does
LENGTH_NORMS = ("gnmt", "length")


@dataclass(frozen=True)
class DecodeConfig:
    beam: int = 5
    alpha: float = 0.6  # the length penalty's exponent
    length_norm: str = "gnmt"  # one of LENGTH_NORMS
    max_extra: int = 50  # output length limit: source length + max_extra
    batch_tokens: int = 8000

    def __post_init__(self) -> None:
        require("decode", "beam", self.beam, 1 <= self.beam <= MAX_BEAM, f"in [1, {MAX_BEAM}]")
        ok = 0 <= self.alpha <= MAX_ALPHA
        require("decode", "alpha", self.alpha, ok, f"in [0, {MAX_ALPHA:g}]")
        norm = self.length_norm
        require("decode", "length_norm", norm, norm in LENGTH_NORMS, f"one of {LENGTH_NORMS}")
        require("decode", "max_extra", self.max_extra, self.max_extra >= 0, ">= 0")

"""How decoding runs a model a step at a time: the seam between a search
(`aiayn.decode.search`) or a generation (`aiayn.decode.sample`) and the machine.

For the encoder-decoder, `EagerSteps` feeds each step through a growing KV cache, and beams'
rows and finished sentences' rows leave the batch as the search goes. `GraphSteps` keeps every
shape fixed (a `StaticCache`; finished sentences stay in the batch, their rows unread) so that
on CUDA the step is captured once in a CUDA graph and then replayed, one launch instead of one
per kernel: Python no longer sits between the GPU's kernels (`aiayn.decode.replay`). For a
language model, `LMGraphSteps` does the same over `StaticRows`. On a CPU they run the same
fixed-shape step eagerly, which is how the tests prove their tokens equal the eager path's.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from aiayn.decode.cache import KVCache
from aiayn.decode.replay import Replayed
from aiayn.decode.static import StaticCache, StaticRows
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.models.encoder_decoder import EncoderDecoder


class EagerSteps:
    """The decoder over a `KVCache` (or, without one, over the whole prefix each step)."""

    def __init__(
        self, model: EncoderDecoder, memory: Tensor, src_pad: Tensor, cache: KVCache | None
    ) -> None:
        self.model, self.memory, self.src_pad, self.cache = model, memory, src_pad, cache

    def logits(self, tokens: Tensor) -> Tensor:
        """The next token's logits after `tokens` (the last one, with a cache)."""
        # tokens: (n, T) -> (n, V)
        return self.model.decode(tokens, self.memory, self.src_pad, self.cache)[:, -1]

    def reorder(self, rows: Tensor, keep: Tensor | None) -> None:
        """Continue from rows `rows` (each beam's parent); of the sentences, only `keep`."""
        self.cache.reorder_beams(rows, memory_rows=keep)
        if keep is not None:
            self.memory, self.src_pad = self.memory[keep], self.src_pad[keep]


class GraphSteps:
    """The decoder over a `StaticCache` of `capacity` positions, for `beam` rows a sentence;
    on CUDA its step is captured in a CUDA graph at the second step and replayed after
    (`aiayn.decode.replay`)."""

    def __init__(
        self, model: EncoderDecoder, memory: Tensor, src_pad: Tensor, beam: int, capacity: int
    ) -> None:
        cfg = model.cfg
        if cfg.positional == "learned" and capacity > cfg.max_len:  # unchecked once captured
            raise ValueError(
                f"a search to {capacity} positions is beyond the learned encoding's "
                f"max_len={cfg.max_len}; cap the output length"
            )
        self.model, self.memory, self.src_pad, self.beam = model, memory, src_pad, beam
        self.cache = StaticCache(capacity, memory.device)
        self.tokens = torch.zeros(memory.size(0) * beam, 1, dtype=torch.long, device=memory.device)
        # the batch rows of the sentences still searched, in the search's order
        self.sentences = torch.arange(memory.size(0), device=memory.device)
        # a function of the buffers, not of `self`: a bound method would make a reference cycle
        # that keeps a dropped search's buffers (and graph) until the cycle collector runs
        forward = partial(_decode, model, self.tokens, memory, src_pad, self.cache)
        self.t, self.step = 0, Replayed(forward, memory.device)

    def rows(self) -> Tensor:
        """The buffer rows of the sentences searched, each sentence's beams together."""
        beams = torch.arange(self.beam, device=self.sentences.device)
        return (self.sentences[:, None] * self.beam + beams).view(-1)

    def logits(self, tokens: Tensor) -> Tensor:
        # tokens: (n, 1), the last token of each row searched -> (n, V)
        rows = self.rows()
        self.tokens[rows] = tokens
        self.cache.step.fill_(self.t)
        # the first step computes the memory's keys and values, which the graph then reads
        out = self.step.forward() if self.t == 0 else self.step()
        self.t += 1
        return out[rows]  # a copy: a replay overwrites `out`

    def reorder(self, rows: Tensor, keep: Tensor | None) -> None:
        searched = self.rows()  # before `keep`: the numbering `rows` is in
        if keep is not None:
            self.sentences = self.sentences[keep]
        index = torch.arange(self.tokens.size(0), device=rows.device)
        index[self.rows()] = searched[rows]
        self.cache.reorder(index, self.t)


def _decode(
    model: EncoderDecoder, tokens: Tensor, memory: Tensor, src_pad: Tensor, cache: StaticCache
) -> Tensor:
    return model.decode(tokens, memory, src_pad, cache)[:, -1]


def decoder_steps(
    model: EncoderDecoder,
    memory: Tensor,
    src_pad: Tensor,
    beam: int,
    capacity: int,
    graph: bool,
    use_cache: bool = True,
) -> EagerSteps | GraphSteps:
    """The steps of a search for `beam` rows a sentence, to at most `capacity` positions:
    `graph` for static shapes (in a CUDA graph on CUDA), else eager, over a cache unless
    `use_cache` is False (the whole prefix recomputed each step, for tests)."""
    if graph and not use_cache:
        raise ValueError("graph=True decodes over a static cache; it needs use_cache=True")
    if graph:
        return GraphSteps(model, memory, src_pad, beam, capacity)
    return EagerSteps(model, memory, src_pad, KVCache() if use_cache else None)


class LMGraphSteps:
    """A decoder-only model over `StaticRows` of `capacity` columns: the prompt read eagerly,
    then each token a row through a step captured in a CUDA graph on CUDA. `length` and
    `key_pad` say what a `KVCache`'s would (`aiayn.decode.sample.refill` reads them)."""

    def __init__(
        self, model: DecoderOnlyLM, rows: int, capacity: int, device: torch.device
    ) -> None:
        self.model, self.cache = model, StaticRows(rows, capacity, device)
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.step = Replayed(partial(_next, model, self.tokens, self.cache), device)

    @property
    def length(self) -> int:
        return self.cache.length

    @property
    def key_pad(self) -> Tensor | None:
        return self.cache.written_pad()

    def logits(self, tokens: Tensor, pad_mask: Tensor | None) -> Tensor:
        """The next token's logits after `tokens` (B, T) (`pad_mask`: True at padding)."""
        # -> (B, V)
        if tokens.size(1) == 1 and pad_mask is None:
            self.tokens.copy_(tokens)
            out = self.step().clone()  # the caller may change it; a replay would overwrite it
        else:
            out = self.model(tokens, self.cache, pad_mask, last_only=True)[:, -1]
        self.cache.advance(pad_mask, tokens.size(1))
        return out

    def reset(self) -> None:
        """Empty, to be refilled: the buffers and the captured graph are kept."""
        self.cache.reset()


def _next(model: DecoderOnlyLM, tokens: Tensor, cache: StaticRows) -> Tensor:
    return model(tokens, cache, None, last_only=True)[:, -1]

"""Decoding state with static shapes: buffers of a fixed capacity that a step writes at a
position held in a tensor, attending over the whole buffer with the unwritten positions masked.
Every step then has the same shapes and reads and writes the same memory, which is what a CUDA
graph captured once and replayed needs (`aiayn.decode.steps`). They implement the seams of
`aiayn.nn.seams` as `aiayn.decode.cache`'s growing caches do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aiayn.decode.cache import LayerCache
from aiayn.nn.masks import Mask, attention_mask
from aiayn.nn.positional import PositionalEncoding, Rotation


@dataclass
class Columns:
    """Where a stack's layers write and read in buffers of `capacity` columns: the columns of
    the new positions (a tensor, not a Python int, so that a CUDA graph reads them anew at each
    replay) and how many columns, from the first, attention reads: all of them in a step that
    is captured, whose shapes never change."""

    capacity: int
    cols: Tensor
    span: int


class StaticLayerCache(LayerCache):
    """A layer's keys and values in buffers of a fixed capacity, allocated at the first step:
    the new positions are written at `at.cols`, and attention reads the first `at.span`
    columns, what is unwritten among them masked."""

    def __init__(self, at: Columns) -> None:
        super().__init__()
        self.at = at  # shared with the stack's state, which moves it: not the state itself,
        # whose list of layers would make a reference cycle and keep dropped buffers alive

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        # k, v: (B, H_kv, T_new, d_head) -> (B, H_kv, span, d_head) each
        if self.k is None:
            # zeros, not empty(): a masked key's weight is 0, and 0 * NaN left in memory is NaN
            shape = (k.size(0), k.size(1), self.at.capacity, k.size(3))
            self.k, self.v = k.new_zeros(shape), v.new_zeros(shape)
        self.k.index_copy_(2, self.at.cols, k)
        self.v.index_copy_(2, self.at.cols, v)
        return self.k[:, :, : self.at.span], self.v[:, :, : self.at.span]


class StaticCache:
    """The `StackState` of a decoder read one token a row per step at the position `step`
    (a (1,) tensor the caller sets), with buffers of `capacity` positions: the encoder-decoder's
    decoder, whose rows have no padding. Beams are reordered in place (`reorder`), so the
    buffers never move."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.at = Columns(capacity, self.step, capacity)
        self.layers: list[StaticLayerCache] = []

    def layer(self, i: int) -> StaticLayerCache:
        return _layer(self.layers, self.at, i)

    def positions(
        self,
        pos: PositionalEncoding,
        drop: Callable[[Tensor], Tensor],
        x: Tensor,
        pad_mask: Tensor | None,
        causal: bool,
        window: int | None,
    ) -> tuple[Tensor, Mask, Rotation | None]:
        # x: (B, 1, d_model) -> (B, 1, d_model), mask (1 or H, 1, capacity) over the buffer
        if x.size(1) != 1 or pad_mask is not None or not causal or window is not None:
            raise ValueError(
                f"a static cache reads one unpadded token a row under full causal attention; "
                f"got {x.size(1)} tokens, padding {pad_mask is not None}, causal {causal}, "
                f"window {window}"
            )
        keys = torch.arange(self.capacity, device=x.device)
        bias = pos.score_bias(self.step, keys)
        mask = attention_mask(1, self.capacity, (keys > self.step)[None], False, bias, x.device)
        return drop(pos.embed(x, self.step)), mask, pos.rotation(self.step)

    def reorder(self, index: Tensor, length: int) -> None:
        """Row i of every buffer becomes row `index[i]`, in place, for the `length` positions
        written so far (the rest is masked until written)."""
        for layer in self.layers:
            for buf in (layer.k, layer.v):
                if buf is not None:
                    filled = buf[:, :, :length]
                    filled.copy_(filled.index_select(0, index))


def _layer(layers: list[StaticLayerCache], at: Columns, i: int) -> StaticLayerCache:
    while len(layers) <= i:
        layers.append(StaticLayerCache(at))
    return layers[i]


class StaticRows:
    """The `StackState` of a decoder-only model's batch whose rows may begin with padding (a
    left-padded batch of prompts), with buffers of `capacity` columns: the prompt is read at
    once, then a token a row per step. As `aiayn.decode.cache.RowPositions` counts them, a
    token's position is the number of real tokens before it in its row, and padding keys are
    masked; a sliding window counts columns, as the growing cache's mask does. A one-token
    step attends over every column (the shapes a CUDA graph replays); a prompt, read eagerly,
    over the columns written so far.

    `positions` only writes what the new columns hold, the same at every call with the same
    inputs (so a CUDA graph's warm-up and capture may run it first); `advance` then moves past
    them, outside any graph."""

    def __init__(self, rows: int, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        self.col = torch.zeros(1, dtype=torch.long, device=device)  # `length` on the device
        self.seen = torch.zeros(rows, dtype=torch.long, device=device)  # real tokens a row
        self.key_pad = torch.ones(rows, capacity, dtype=torch.bool, device=device)  # unwritten
        self.key_pos = torch.zeros(rows, capacity, dtype=torch.long, device=device)
        self.at = Columns(capacity, self.col, capacity)
        self.layers: list[StaticLayerCache] = []
        self.reset()

    def reset(self) -> None:
        """Empty, the buffers kept where they are (a captured graph keeps reading them)."""
        self.length, self.padded = 0, False  # columns written; whether any padding was read
        self.col.zero_()
        self.seen.zero_()
        self.key_pad.fill_(True)
        self.key_pos.zero_()

    def layer(self, i: int) -> StaticLayerCache:
        return _layer(self.layers, self.at, i)

    def positions(
        self,
        pos: PositionalEncoding,
        drop: Callable[[Tensor], Tensor],
        x: Tensor,
        pad_mask: Tensor | None,
        causal: bool,
        window: int | None,
    ) -> tuple[Tensor, Mask, Rotation | None]:
        # x: (B, T, d_model), pad_mask (B, T) or None -> (B, T, d_model), mask (B, 1 or H, T,
        # span) over the buffer's first columns
        if not causal:
            raise ValueError("static rows are a causal stack's decoding state")
        b, t = x.shape[:2]
        span = self.capacity if t == 1 else self.length + t
        keys = torch.arange(span, device=x.device)
        cols = self.at.cols = self.col + keys[:t]  # (T,)
        self.at.span = span
        new_pad = x.new_zeros(b, t, dtype=torch.bool) if pad_mask is None else pad_mask
        queries = (self.seen[:, None] + (~new_pad).cumsum(1) - 1).clamp(min=0)  # (B, T)
        self.key_pad.index_copy_(1, cols, new_pad)
        self.key_pos.index_copy_(1, cols, queries)
        key_pad, key_pos = self.key_pad[:, :span], self.key_pos[:, :span]
        seen = (keys <= cols[:, None]) & ~key_pad[:, None, :]  # (B, T, span)
        if window is not None:
            seen &= keys > cols[:, None] - window
        # a query that may see no key (left padding) sees its own, as `attention_mask` has it
        own = keys == cols[:, None]
        mask = (seen | (own & ~seen.any(-1, keepdim=True)))[:, None]
        bias = pos.score_bias(queries, key_pos)
        if bias is not None:
            mask = bias.masked_fill(~mask, float("-inf"))
        return drop(pos.embed(x, queries)), mask, pos.rotation(queries)

    def advance(self, pad_mask: Tensor | None, t: int) -> None:
        """Move past the `t` columns just read (`pad_mask`: which of them were padding)."""
        self.seen += t if pad_mask is None else (~pad_mask).sum(1)
        self.padded |= pad_mask is not None and bool(pad_mask.any())
        self.length += t
        self.col.fill_(self.length)

    def written_pad(self) -> Tensor | None:
        """Which written columns are padding (B, length), None when none ever was: what a
        `KVCache`'s `key_pad` says."""
        return self.key_pad[:, : self.length] if self.padded else None

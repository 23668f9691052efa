"""Decoding state with static shapes: buffers of a fixed capacity that a step writes at a
position held in a tensor, attending over the whole buffer with the unwritten positions masked.
Every step then has the same shapes and reads and writes the same memory, which is what a CUDA
graph captured once and replayed needs (`aiayn.decode.steps`). They implement the seams of
`aiayn.nn.seams` as `aiayn.decode.cache`'s growing caches do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from aiayn.decode.cache import LayerCache
from aiayn.nn.masks import Mask, attention_mask
from aiayn.nn.positional import PositionalEncoding, Rotation


class StaticLayerCache(LayerCache):
    """A layer's keys and values in buffers of a fixed capacity, allocated at the first step:
    the new positions are written at the columns its stack's state names (`stack.cols`, a
    tensor, not a Python int), and attention reads the whole buffer, what is unwritten masked."""

    def __init__(self, stack: StaticCache | StaticRows) -> None:
        super().__init__()
        self.stack = stack

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        # k, v: (B, H_kv, T_new, d_head) -> (B, H_kv, capacity, d_head) each
        if self.k is None:
            # zeros, not empty(): a masked key's weight is 0, and 0 * NaN left in memory is NaN
            shape = (k.size(0), k.size(1), self.stack.capacity, k.size(3))
            self.k, self.v = k.new_zeros(shape), v.new_zeros(shape)
        self.k.index_copy_(2, self.stack.cols, k)
        self.v.index_copy_(2, self.stack.cols, v)
        return self.k, self.v


class StaticCache:
    """The `StackState` of a decoder read one token a row per step at the position `step`
    (a (1,) tensor the caller sets), with buffers of `capacity` positions: the encoder-decoder's
    decoder, whose rows have no padding. Beams are reordered in place (`reorder`), so the
    buffers never move."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.cols = self.step  # where a step writes
        self.layers: list[StaticLayerCache] = []

    def layer(self, i: int) -> StaticLayerCache:
        return _layer(self, i)

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


def _layer(stack: StaticCache | StaticRows, i: int) -> StaticLayerCache:
    while len(stack.layers) <= i:
        stack.layers.append(StaticLayerCache(stack))
    return stack.layers[i]


class StaticRows:
    """The `StackState` of a decoder-only model's batch whose rows may begin with padding (a
    left-padded batch of prompts), with buffers of `capacity` columns: the prompt is read at
    once, then a token a row per step. As `aiayn.decode.cache.RowPositions` counts them, a
    token's position is the number of real tokens before it in its row, and padding keys are
    masked; a sliding window counts columns, as the growing cache's mask does.

    `positions` only writes what the new columns hold, the same at every call with the same
    inputs (so a CUDA graph's warm-up and capture may run it first); `advance` then moves past
    them, outside any graph."""

    def __init__(self, rows: int, capacity: int, device: torch.device) -> None:
        self.capacity, self.length = capacity, 0  # columns written so far
        self.col = torch.zeros(1, dtype=torch.long, device=device)  # `length` on the device
        self.seen = torch.zeros(rows, dtype=torch.long, device=device)  # real tokens a row
        self.key_pad = torch.ones(rows, capacity, dtype=torch.bool, device=device)  # unwritten
        self.key_pos = torch.zeros(rows, capacity, dtype=torch.long, device=device)
        self.padded = False  # whether any padding was read
        self.cols = self.col
        self.layers: list[StaticLayerCache] = []

    def layer(self, i: int) -> StaticLayerCache:
        return _layer(self, i)

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
        # capacity) over the buffer's columns
        if not causal:
            raise ValueError("static rows are a causal stack's decoding state")
        b, t = x.shape[:2]
        keys = torch.arange(self.capacity, device=x.device)
        self.cols = self.col + keys[:t]  # (T,)
        new_pad = x.new_zeros(b, t, dtype=torch.bool) if pad_mask is None else pad_mask
        queries = (self.seen[:, None] + (~new_pad).cumsum(1) - 1).clamp(min=0)  # (B, T)
        self.key_pad.index_copy_(1, self.cols, new_pad)
        self.key_pos.index_copy_(1, self.cols, queries)
        seen = (keys <= self.cols[:, None]) & ~self.key_pad[:, None, :]  # (B, T, capacity)
        if window is not None:
            seen &= keys > self.cols[:, None] - window
        # a query that may see no key (left padding) sees its own, as `attention_mask` has it
        own = keys == self.cols[:, None]
        mask = (seen | (own & ~seen.any(-1, keepdim=True)))[:, None]
        bias = pos.score_bias(queries, self.key_pos)
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

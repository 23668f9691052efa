"""Decoding's state inside the model: key/value caches, beams sharing memory, left padding.

Each step attends to what earlier steps computed. The paper's modules take these objects at
the seams `aiayn.nn.seams` names (`StackState`, `LayerState`) and know nothing else of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aiayn.decode.weights import alike
from aiayn.nn.attention import CrossAttention
from aiayn.nn.masks import Mask, attention_mask
from aiayn.nn.positional import PositionalEncoding, Rotation
from aiayn.nn.stack import add_positions


@dataclass
class LayerCache:
    """One layer's self-attention keys and values so far, and its cross-attention memory's.

    Keys and values live in buffers with room to spare, doubled when full, so a step writes
    its own keys instead of copying all earlier ones (as concatenation would).
    """

    k: Tensor | None = None  # (B, H_kv, capacity, d_head), filled up to `length`
    v: Tensor | None = None
    length: int = 0
    memory_kv: tuple[Tensor, Tensor] | None = None  # computed once from the encoder's output
    # the memory (1-D) of the buffers the last reorder copied from, which the next one copies
    # into: fresh buffers each step would be new pages, faulted in by the kernel as written
    spare: tuple[Tensor, Tensor] | None = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add this step's keys and values; return all of them."""
        # k, v: (B, H_kv, T_new, d_head) -> (B, H_kv, length, d_head) each
        end = self.length + k.size(2)
        if self.k is None or end > self.k.size(2):
            self.k = _grown(self.k, k, self.length, end)
            self.v = _grown(self.v, v, self.length, end)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keep the batch rows `index` (in that order) of the keys and values so far."""
        k, v = self.spare or (None, None)
        self.k, self.v, self.spare = (
            _rows(self.k, index, self.length, k),
            _rows(self.v, index, self.length, v),
            (_memory(self.k), _memory(self.v)),
        )

    def cross_attention(
        self, attn: CrossAttention, x: Tensor, memory: Tensor, mask: Mask
    ) -> Tensor:
        """`attn` over the memory, whose keys and values are computed at the first step only.

        The memory may have fewer rows than the queries: each memory row then serves as many
        consecutive query rows (a sentence's beams in beam search), whose queries attend to it
        together, so its keys and values are computed, kept and read once, not once per beam.
        """
        # x: (B, T, d_model), memory: (B / g, S, d_model), mask (B / g, 1, 1 or T, S)
        # -> (B, T, d_model), query rows i*g ... i*g + g-1 attending to memory row i
        if self.memory_kv is None:  # contiguous: each step's product then reads it in place
            self.memory_kv = tuple(t.contiguous() for t in attn.keys_values(memory))
        k, v = self.memory_kv
        q = attn.queries(x)  # (B, H, T, d_head)
        b, h, t, d = q.shape
        if b == k.size(0):
            return attn.attend(q, k, v, mask)
        if b % k.size(0) or (mask is not None and mask.size(-2) != 1):
            raise ValueError(
                f"{b} query rows cannot share {k.size(0)} memory rows; expected a multiple "
                "of them, each attending to the whole memory (a padding mask only)"
            )
        g = b // k.size(0)
        q = q.view(-1, g, h, t, d).transpose(1, 2).reshape(-1, h, g * t, d)
        return attn.attend(q, k, v, mask).view(b, t, -1)  # from (B / g, g * T, d_model)


def _grown(old: Tensor | None, new: Tensor, length: int, need: int) -> Tensor:
    """A buffer for at least `need` positions (twice that), holding `old`'s first `length`."""
    b, h, _, d = new.shape
    buf = new.new_empty(b, h, max(2 * need, 16), d)
    if old is not None:
        buf[:, :, :length] = old[:, :, :length]
    return buf


class RowPositions:
    """Positions for a causal stack whose rows may begin with padding (a left-padded batch of
    prompts): a token's position is the number of real tokens before it in its row, and
    padding keys are masked. Without padding, the paper's positions after those decoded.

    Alone it keeps nothing (a batch decoded without a cache); `KVCache` adds the caches.
    """

    key_pad: Tensor | None = None  # (B, length): which cached keys are padding, once any were
    key_pos: Tensor | None = None  # (B, length): each cached key's position in its row

    @property
    def length(self) -> int:
        return 0

    def layer(self, i: int) -> LayerCache | None:
        return None

    def positions(
        self,
        pos: PositionalEncoding,
        drop: Callable[[Tensor], Tensor],
        x: Tensor,
        pad_mask: Tensor | None,
        causal: bool,
        window: int | None,
    ) -> tuple[Tensor, Mask, Rotation | None]:
        """`aiayn.nn.stack.add_positions` for the positions after those already decoded."""
        if causal and (pad_mask is not None or self.key_pad is not None):
            return self.row_positions(pos, drop, x, pad_mask, window)
        return add_positions(pos, drop, x, pad_mask, causal, self.length, window)

    def row_positions(
        self,
        pos: PositionalEncoding,
        drop: Callable[[Tensor], Tensor],
        x: Tensor,
        pad_mask: Tensor | None,
        window: int | None,
    ) -> tuple[Tensor, Mask, Rotation | None]:
        # x: (B, T, d_model), pad_mask: (B, T) True at padding, or None: no padding among the new
        b, t = x.shape[:2]
        new_pad = x.new_zeros(b, t, dtype=torch.bool) if pad_mask is None else pad_mask
        start = self.length
        if self.key_pad is not None:
            old_pad, old_pos = self.key_pad, self.key_pos
        else:  # what was cached before had no padding
            old_pad = new_pad.new_zeros(b, start)
            old_pos = torch.arange(start, device=x.device).expand(b, start)
        seen = (~old_pad).sum(1, keepdim=True)
        queries = (seen + (~new_pad).cumsum(1) - 1).clamp(min=0)  # (B, T)
        key_pad, keys = torch.cat([old_pad, new_pad], 1), torch.cat([old_pos, queries], 1)
        self.keep(key_pad, keys)
        bias = pos.score_bias(queries, keys)
        mask = attention_mask(t, start + t, key_pad, True, bias, x.device, window)
        return drop(pos.embed(x, queries)), mask, pos.rotation(queries)

    def keep(self, key_pad: Tensor, key_pos: Tensor) -> None:
        """Without a cache the next call starts afresh: nothing to keep."""


class KVCache(RowPositions):
    """The caches of a whole stack, each layer's made at its first use, with the number of
    positions already decoded. Once a left-padded batch has been fed (decoder-only models),
    it also keeps which cached keys are padding and each key's position in its row."""

    def __init__(self) -> None:
        self.layers: list[LayerCache] = []

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0

    def layer(self, i: int) -> LayerCache:
        while len(self.layers) <= i:
            self.layers.append(LayerCache())
        return self.layers[i]

    def keep(self, key_pad: Tensor, key_pos: Tensor) -> None:
        self.key_pad, self.key_pos = key_pad, key_pos

    def reorder_beams(self, index: Tensor, memory_rows: Tensor | None = None) -> None:
        """Keep the batch rows `index`: each surviving beam's parent. Beams move only among
        their own sentence's rows, which share one row of cross-attention memory: it stays,
        but for keeping `memory_rows` alone when sentences leave the batch."""
        for layer in self.layers:
            if layer.k is not None:
                layer.reorder(index)
            if memory_rows is not None and layer.memory_kv is not None:
                k, v = layer.memory_kv
                layer.memory_kv = (k[memory_rows], v[memory_rows])
        if self.key_pad is not None:
            self.key_pad, self.key_pos = self.key_pad[index], self.key_pos[index]


def _rows(buf: Tensor, index: Tensor, length: int, into: Tensor | None = None) -> Tensor:
    """A buffer of `length` + 1 positions holding rows `index` of `buf`'s first `length`: the
    one position more is for the next step's keys, which a beam's step then attends to with
    all earlier ones as one block of memory, not rows strided by a larger capacity (the
    written-out path's products over 30 keys of 64 took 0.3-0.5x the time: 160 rows of 8
    heads, 2-core AMD EPYC). The rows are written into `into` (1-D memory no longer read)
    where it is large enough; new memory is twice the size, for the steps to come."""
    # buf: (B, H_kv, capacity, d_head) -> (N, H_kv, length + 1, d_head), N = len(index)
    shape = (index.numel(), buf.size(1), length + 1, buf.size(3))
    size = math.prod(shape)
    fits = into is not None and into.numel() >= size and alike(into, buf)
    out = (into if fits else buf.new_empty(2 * size))[:size].view(shape)
    torch.index_select(buf[:, :, :length], 0, index, out=out[:, :, :length])
    return out


def _memory(t: Tensor) -> Tensor:
    """All the memory under `t`, as a 1-D tensor of its dtype."""
    storage = t.untyped_storage()
    return t.new_empty(0).set_(storage, 0, (storage.nbytes() // t.element_size(),))

"""Key/value caches for incremental decoding: each step attends to what earlier steps computed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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


def _grown(old: Tensor | None, new: Tensor, length: int, need: int) -> Tensor:
    """A buffer for at least `need` positions (twice that), holding `old`'s first `length`."""
    b, h, _, d = new.shape
    buf = new.new_empty(b, h, max(2 * need, 16), d)
    if old is not None:
        buf[:, :, :length] = old[:, :, :length]
    return buf


class KVCache:
    """The caches of a whole stack, with the number of positions already decoded.

    Once a left-padded batch has been fed (decoder-only models), it also keeps which cached
    keys are padding and each key's position in its row, both (B, length).
    """

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerCache() for _ in range(n_layers)]
        self.key_pad: Tensor | None = None
        self.key_pos: Tensor | None = None

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reorder_beams(self, index: Tensor, memory_rows: Tensor | None = None) -> None:
        """Keep the batch rows `index`: each surviving beam's parent. Beams move only among
        their own sentence's rows, which share one row of cross-attention memory: it stays,
        but for keeping `memory_rows` alone when sentences leave the batch."""
        for layer in self.layers:
            if layer.k is not None:
                layer.k = _rows(layer.k, index, layer.length)
                layer.v = _rows(layer.v, index, layer.length)
            if memory_rows is not None and layer.memory_kv is not None:
                k, v = layer.memory_kv
                layer.memory_kv = (k[memory_rows], v[memory_rows])
        if self.key_pad is not None:
            self.key_pad, self.key_pos = self.key_pad[index], self.key_pos[index]


def _rows(buf: Tensor, index: Tensor, length: int) -> Tensor:
    """A buffer of `buf`'s capacity holding rows `index` of its first `length` positions: the
    spare room past `length` (up to as much again) is not copied."""
    out = buf.new_empty(index.numel(), *buf.shape[1:])
    torch.index_select(buf[:, :, :length], 0, index, out=out[:, :, :length])
    return out

"""Key/value caches for incremental decoding: each step attends to what earlier steps computed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LayerCache:
    """One layer's self-attention keys and values so far, and its cross-attention memory's."""

    k: Tensor | None = None  # (B, H_kv, T, d_head)
    v: Tensor | None = None
    memory_kv: tuple[Tensor, Tensor] | None = None  # computed once from the encoder's output

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add this step's keys and values; return all of them."""
        self.k = k if self.k is None else _cat(self.k, k)
        self.v = v if self.v is None else _cat(self.v, v)
        return self.k, self.v


def _cat(a: Tensor, b: Tensor) -> Tensor:
    return torch.cat([a, b], dim=2)


class KVCache:
    """The caches of a whole stack, with the number of positions already decoded."""

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerCache() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.size(2)

    def reorder_beams(self, index: Tensor) -> None:
        """Keep the batch rows `index`: each surviving beam's parent. Beams move only among
        their own sentence's rows, whose cross-attention memory is the same: it stays."""
        for layer in self.layers:
            if layer.k is not None:
                layer.k, layer.v = layer.k[index], layer.v[index]

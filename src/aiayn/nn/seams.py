"""The named seams where decoding and the runtime reach into the paper's modules.

The modules in `aiayn.nn` compute the paper's equations and nothing else; what only decoding
or a particular machine needs is handed to them through these points:

- a kernel (`aiayn.nn.attention.Kernel`), each `MultiHeadAttention`'s `kernel`: which code
  computes softmax(Q K^T / sqrt(d_k)) V. The equation written out unless a run sets another
  (`aiayn.runtime.attention.use_attention`: torch's fused kernel, or one chosen per call).
- a `StackState`, the `cache` a stack's forward takes: where each row's positions start
  and which keys are padding (a left-padded batch of prompts), and each layer's `LayerState`.
  Without one a stack numbers its positions 0 ... T-1, as the paper does.
- a `LayerState`, the `cache` an attention's forward takes: self-attention appends the new
  keys and values to it; cross-attention hands it the whole computation, so that the memory's
  keys and values are computed once and may serve several query rows (a sentence's beams).

`aiayn.decode.cache` implements the two states; nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor, nn

from aiayn.nn.masks import Mask
from aiayn.nn.positional import PositionalEncoding, Rotation


class LayerState(Protocol):
    """One layer's part of a decoding state."""

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new positions' keys and values (B, H_kv, T_new, d_head); return all."""
        ...

    def cross_attention(self, attn: nn.Module, x: Tensor, memory: Tensor, mask: Mask) -> Tensor:
        """The `CrossAttention` `attn`'s output for queries `x` over `memory`, the
        memory's keys and values kept here."""
        ...


class StackState(Protocol):
    """A whole stack's part of a decoding state."""

    def positions(
        self,
        pos: PositionalEncoding,
        drop: Callable[[Tensor], Tensor],
        x: Tensor,
        pad_mask: Tensor | None,
        causal: bool,
        window: int | None,
    ) -> tuple[Tensor, Mask, Rotation | None]:
        """What `aiayn.nn.stack.add_positions` returns, for positions after those decoded."""
        ...

    def layer(self, i: int) -> LayerState | None:
        """Layer i's state (None: nothing kept)."""
        ...

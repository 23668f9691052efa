"""Scaled dot-product attention (paper §3.2.1) and multi-head attention (§3.2.2).

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, written out in `attention_math`. Each
`MultiHeadAttention` computes it through its `kernel`, the equation written out unless the
run hands it another (torch's fused kernel, proved equal by the tests: `aiayn.runtime.attention`).
Masks follow `aiayn.nn.masks`; decoding's caches reach in through `aiayn.nn.seams`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from aiayn.nn.dropout import dropout
from aiayn.nn.masks import CAUSAL, Mask, causal_mask
from aiayn.nn.positional import Rotation, apply_rotary
from aiayn.nn.seams import LayerState


def attention_math(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k) + mask) v; returns the output and the attention weights.
    `scale` replaces 1 / sqrt(d_k) (1.0: the unscaled scores of the ablation study)."""
    # q: (B, H, T_q, d_k), k: (B, H, T_k, d_k), v: (B, H, T_k, d_v)
    if mask is CAUSAL:
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = masked(q @ k.transpose(-2, -1) * scale, mask)  # (B, H, T_q, T_k)
    weights = scores.softmax(dim=-1)
    out = dropout(weights, dropout_p) @ v
    return out, weights  # (B, H, T_q, d_v), (B, H, T_q, T_k)


def masked(scores: Tensor, mask: Mask) -> Tensor:
    """`scores` with `mask` applied: -inf where a boolean mask is False, a float one added."""
    if mask is not None and mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores if mask is None else scores + mask


# (q, k, v, mask, dropout_p, scale) -> output: what computes the equation above
Kernel = Callable[[Tensor, Tensor, Tensor, Mask, float, "float | None"], Tensor]


def written_out(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The kernel that is `attention_math`, its output alone."""
    return attention_math(q, k, v, mask, dropout_p, scale)[0]


class MultiHeadAttention(nn.Module):
    """What self- and cross-attention share: h heads attend in parallel, then W^O projects.

    With n_kv_heads < n_heads, groups of query heads share a key/value head (grouped-query).
    Each head has d_head dimensions (d_model / n_heads unless given, as in some Llama-family
    models); `qkv_bias` (default: `bias`) sets the biases of the query, key and value maps
    apart from the output's, as Qwen2 has them.
    `kernel` is how this machine computes the equation, not what the model is
    (`record_attention` lends one that keeps the per-head weights).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        d_head: int | None = None,
        qkv_bias: bool | None = None,
        scale_scores: bool = True,
        kernel: Kernel = written_out,
    ) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads or n_heads
        self.d_model, self.d_head = d_model, d_head or d_model // n_heads
        self.qkv_bias = bias if qkv_bias is None else qkv_bias
        self.dropout, self.kernel = dropout, kernel
        self.scale = None if scale_scores else 1.0  # None: 1 / sqrt(d_head), the paper's
        self.out = nn.Linear(n_heads * self.d_head, d_model, bias=bias)

    def split(self, x: Tensor, n: int) -> Tensor:
        """(B, T, n * d_head) -> (B, n, T, d_head)."""
        return x.unflatten(-1, (n, self.d_head)).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        # q: (B, H, T_q, d_head), k, v: (B, H_kv, T_k, d_head) -> (B, T_q, d_model)
        if self.n_kv_heads != self.n_heads:
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        p = self.dropout if self.training else 0.0
        out = self.kernel(q, k, v, mask, p, self.scale)
        return self.out(out.transpose(1, 2).flatten(2))  # Concat(head_1, ..., head_h) W^O


class SelfAttention(MultiHeadAttention):
    """Queries, keys and values from the same sequence, through one fused projection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        width = (self.n_heads + 2 * self.n_kv_heads) * self.d_head
        self.qkv = nn.Linear(self.d_model, width, bias=self.qkv_bias)

    def forward(
        self,
        x: Tensor,
        mask: Mask = None,
        rotation: Rotation | None = None,
        cache: LayerState | None = None,
    ) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model); Q = x W^Q, K = x W^K, V = x W^V for all heads
        # at once; a decoding cache holds earlier positions' K and V and returns them all
        kv_dim = self.n_kv_heads * self.d_head
        q, k, v = self.qkv(x).split([self.n_heads * self.d_head, kv_dim, kv_dim], dim=-1)
        q, k, v = (
            self.split(q, self.n_heads),
            self.split(k, self.n_kv_heads),
            self.split(v, self.n_kv_heads),
        )
        if rotation is not None:
            q, k = apply_rotary(q, rotation), apply_rotary(k, rotation)
        if cache is not None:
            k, v = cache.append(k, v)
        return self.attend(q, k, v, mask)


class CrossAttention(MultiHeadAttention):
    """Queries from the decoder, keys and values from the encoder's output (the memory)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.q = nn.Linear(self.d_model, self.n_heads * self.d_head, bias=self.qkv_bias)
        self.kv = nn.Linear(self.d_model, 2 * self.n_kv_heads * self.d_head, bias=self.qkv_bias)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """K = memory W^K, V = memory W^V: (B, S, d_model) -> (B, H_kv, S, d_head) each."""
        return tuple(self.split(t, self.n_kv_heads) for t in self.kv(memory).chunk(2, dim=-1))

    def queries(self, x: Tensor) -> Tensor:
        """Q = x W^Q: (B, T, d_model) -> (B, H, T, d_head)."""
        return self.split(self.q(x), self.n_heads)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        mask: Mask = None,
        cache: LayerState | None = None,
    ) -> Tensor:
        # x: (B, T, d_model), memory: (B, S, d_model), mask (B, 1, 1 or T, S) -> (B, T, d_model);
        # a decoding cache computes the memory's K and V once and does the rest itself
        if cache is not None:
            return cache.cross_attention(self, x, memory, mask)
        k, v = self.keys_values(memory)
        return self.attend(self.queries(x), k, v, mask)


def recording(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask,
    dropout_p: float,
    scale: float | None,
    *,
    into: dict[str, Tensor],
    name: str,
) -> Tensor:
    """The written-out kernel, keeping its weights in `into[name]`."""
    out, weights = attention_math(q, k, v, mask, dropout_p, scale)
    into[name] = weights.detach()
    return out


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Within the block, each forward fills the dict: module name -> (B, H, T_q, T_k) weights."""
    weights: dict[str, Tensor] = {}
    modules = {n: m for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    kernels = {name: m.kernel for name, m in modules.items()}
    for name, m in modules.items():
        m.kernel = partial(recording, into=weights, name=name)
    try:
        yield weights
    finally:
        for name, m in modules.items():
            m.kernel = kernels[name]

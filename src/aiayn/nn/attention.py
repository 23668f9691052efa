"""Scaled dot-product attention (paper §3.2.1) and multi-head attention (§3.2.2).

Attention has two interchangeable paths: `math`, written out, and `sdpa`, torch's fused
`F.scaled_dot_product_attention`; tests prove them equal. `auto` picks one per call, by what
was measured faster (`auto_impl`). Masks follow `aiayn.nn.masks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.nn.cache import LayerCache
from aiayn.nn.dropout import dropout
from aiayn.nn.masks import CAUSAL, Mask, causal_mask
from aiayn.nn.positional import Rotation, apply_rotary

ATTENTION_IMPLS = ("auto", "sdpa", "math")
# `python -m benchmarks.attention_impl [--precision bf16]` (2-core AMD EPYC, torch 2.13; 4 heads
# of 64, batches of 4,096 tokens): on a CPU the written-out path took 0.17-0.62x the fused
# kernel's time for a training call in bf16 at 16-256 keys and 0.86-0.89x at 512, and
# 0.78-0.94x for a decoding step (one query, fp32) at 16-512 keys; in fp32 training the fused
# kernel was faster at every length (math 1.3-2.3x). Beyond the lengths measured, the
# (T_q, T_k) scores the written-out path keeps would cost memory for no known gain. On GPUs
# SDPA runs flash kernels.
AUTO_MATH_UP_TO = 512


def auto_impl(q: Tensor, k: Tensor) -> str:
    """The path that measured faster for these inputs (see AUTO_MATH_UP_TO)."""
    short = k.size(-2) <= AUTO_MATH_UP_TO
    cpu_wins = q.dtype == torch.bfloat16 or q.size(-2) == 1
    return "math" if q.device.type == "cpu" and short and cpu_wins else "sdpa"


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
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T_q, T_k)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    out = dropout(weights, dropout_p) @ v
    return out, weights  # (B, H, T_q, d_v), (B, H, T_q, T_k)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    impl: str = "auto",
    scale: float | None = None,
) -> Tensor:
    """Scaled dot-product attention by the chosen path ("auto", "sdpa" or "math"); `scale`
    replaces 1 / sqrt(d_k)."""
    # q: (B, H, T_q, d_k), k: (B, H, T_k, d_k), v: (B, H, T_k, d_v) -> (B, H, T_q, d_v)
    if impl == "auto":
        impl = auto_impl(q, k)
    kw = {"dropout_p": dropout_p, "scale": scale}
    if impl == "sdpa" and mask is CAUSAL:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)
    if impl == "math":
        return attention_math(q, k, v, mask, dropout_p, scale)[0]
    raise ValueError(f"attention impl={impl!r} is unknown; expected one of {ATTENTION_IMPLS}")


class MultiHeadAttention(nn.Module):
    """What self- and cross-attention share: h heads attend in parallel, then W^O projects.

    With n_kv_heads < n_heads, groups of query heads share a key/value head (grouped-query).
    Each head has d_head dimensions (d_model / n_heads unless given, as in some Llama-family
    models); `qkv_bias` (default: `bias`) sets the biases of the query, key and value maps
    apart from the output's, as Qwen2 has them.
    Set `record = True` (or use `record_attention`) to keep the last per-head weights.
    `impl` is how this machine runs it, not what the model is (`use_attention` sets it).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        impl: str = "auto",
        d_head: int | None = None,
        qkv_bias: bool | None = None,
        scale_scores: bool = True,
    ) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads or n_heads
        self.d_model, self.d_head = d_model, d_head or d_model // n_heads
        self.qkv_bias = bias if qkv_bias is None else qkv_bias
        self.dropout, self.impl = dropout, impl
        self.scale = None if scale_scores else 1.0  # None: 1 / sqrt(d_head), the paper's
        self.out = nn.Linear(n_heads * self.d_head, d_model, bias=bias)
        self.record = False
        self.last_weights: Tensor | None = None

    def split(self, x: Tensor, n: int) -> Tensor:
        """(B, T, n * d_head) -> (B, n, T, d_head)."""
        return x.unflatten(-1, (n, self.d_head)).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        # q: (B, H, T_q, d_head), k, v: (B, H_kv, T_k, d_head) -> (B, T_q, d_model)
        if self.n_kv_heads != self.n_heads:
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        p = self.dropout if self.training else 0.0
        if self.record:
            out, weights = attention_math(q, k, v, mask, p, self.scale)
            self.last_weights = weights.detach()
        else:
            out = attention(q, k, v, mask, p, self.impl, self.scale)
        return self.out(out.transpose(1, 2).flatten(2))


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
        cache: LayerCache | None = None,
    ) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model); with a cache, T new positions after the cached
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
    """Queries from the decoder, keys and values from the encoder's output (the memory).

    The memory may have fewer rows than the queries: each memory row then serves as many
    consecutive query rows (a sentence's beams in beam search), whose queries attend to it
    together, so its keys and values are computed, kept and read once, not once per beam.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.q = nn.Linear(self.d_model, self.n_heads * self.d_head, bias=self.qkv_bias)
        self.kv = nn.Linear(self.d_model, 2 * self.n_kv_heads * self.d_head, bias=self.qkv_bias)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        mask: Mask = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        # x: (B, T, d_model), memory: (B / g, S, d_model), mask (B / g, 1, 1 or T, S)
        # -> (B, T, d_model), query rows i*g ... i*g + g-1 attending to memory row i
        if cache is not None and cache.memory_kv is not None:
            k, v = cache.memory_kv
        else:
            k, v = (self.split(t, self.n_kv_heads) for t in self.kv(memory).chunk(2, dim=-1))
            if cache is not None:
                cache.memory_kv = (k, v)
        q = self.split(self.q(x), self.n_heads)  # (B, H, T, d_head)
        b, h, t, d = q.shape
        if b == k.size(0):
            return self.attend(q, k, v, mask)
        if b % k.size(0) or (mask is not None and mask.size(-2) != 1):
            raise ValueError(
                f"{b} query rows cannot share {k.size(0)} memory rows; expected a multiple "
                "of them, each attending to the whole memory (a padding mask only)"
            )
        g = b // k.size(0)
        q = q.view(-1, g, h, t, d).transpose(1, 2).reshape(-1, h, g * t, d)
        return self.attend(q, k, v, mask).view(b, t, -1)  # from (B / g, g * T, d_model)


def use_attention(model: nn.Module, impl: str) -> None:
    """Run every attention of `model` by the path `impl` (one of ATTENTION_IMPLS)."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl={impl!r} is unknown; expected one of {ATTENTION_IMPLS}")
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.impl = impl


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Within the block, each forward fills the dict: module name -> (B, H, T_q, T_k) weights."""
    weights: dict[str, Tensor] = {}
    modules = {n: m for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    handles = []
    for name, m in modules.items():
        m.record = True
        handles.append(
            m.register_forward_hook(
                lambda mod, _args, _out, name=name: weights.__setitem__(name, mod.last_weights)
            )
        )
    try:
        yield weights
    finally:
        for m in modules.values():
            m.record, m.last_weights = False, None
        for h in handles:
            h.remove()

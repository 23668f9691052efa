"""Which kernel runs each attention: the paper's equation written out, or torch's fused one.

`MultiHeadAttention` runs the equation through its `kernel` (`aiayn.nn.attention`); this
module holds the kernels a run chooses among (`train.attn_impl`) and sets them on a model.
`math` is the equation written out; `sdpa` is torch's fused `F.scaled_dot_product_attention`
(tests prove them equal); `auto` picks one per call, by what was measured faster, and for a
decoding step's one query over few keys `one_query`, the same equation in other kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.nn.attention import Kernel, MultiHeadAttention, masked, written_out
from aiayn.nn.dropout import dropout
from aiayn.nn.masks import CAUSAL, Mask

ATTENTION_IMPLS = ("auto", "sdpa", "math")
# `python -m benchmarks.attention_impl [--precision bf16]` (2-core AMD EPYC, torch 2.13; 4 heads
# of 64, batches of 4,096 tokens): on a CPU the written-out path took 0.17-0.62x the fused
# kernel's time for a training call in bf16 at 16-256 keys and 0.86-0.89x at 512, and
# 0.78-0.94x for a decoding step (one query, fp32) at 16-512 keys; in fp32 training the fused
# kernel was faster at every length (math 1.3-2.3x). Beyond the lengths measured, the
# (T_q, T_k) scores the written-out path keeps would cost memory for no known gain. On GPUs
# SDPA runs flash kernels.
AUTO_MATH_UP_TO = 512
# A beam's cross-attention: a sentence's K queries together over its memory, with a padding
# mask. Once torch.set_num_threads has been called (which turns MKL's dynamic threading off),
# SDPA's CPU kernel, which calls MKL inside its own parallel loop, ran 1.3-5x slower there and
# the written-out path took 0.60-0.78x its time at 16-64 keys (`--threads 2`), 1.0-1.07x at
# 128-512; with torch's default threads, 1.20-1.34x for 8 sentences (its `beam_cross` rows),
# 0.8x for 330. Translating test_2016_flickr with runs/m30k-short, the two ran as fast
# (1.01x), so the path that does not depend on that setting is taken (2-core AMD EPYC).
AUTO_MATH_QUERIES = 16
# torch's CPU `bmm` multiplies matrices of fewer than this many multiply-adds in a scalar loop
BMM_SCALAR_BELOW = 400


def auto_impl(q: Tensor, k: Tensor) -> str:
    """The path that measured faster for these inputs (see AUTO_MATH_UP_TO): `one_query`
    where a decoding step's products would fall into `bmm`'s scalar loop."""
    if q.device.type != "cpu" or k.size(-2) > AUTO_MATH_UP_TO:
        return "sdpa"
    if q.size(-2) == 1 and k.size(-2) * q.size(-1) < BMM_SCALAR_BELOW:
        return "one_query"
    if q.dtype == torch.bfloat16 or q.size(-2) <= AUTO_MATH_QUERIES:
        return "math"
    return "sdpa"


def one_query(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The equation for one query a row, its two products as elementwise products summed:
    vectorised kernels, where `bmm` would loop over scalars (BMM_SCALAR_BELOW). At 2-12 keys
    of 32 dimensions, 1,650 rows of 4 heads, it took 0.69-0.87x the written-out path's time
    (`benchmarks.attention_impl`'s `one_query` rows, 2-core AMD EPYC, fp32); translating
    test_2016_flickr with runs/m30k-short, 1.03x as fast (0.94-1.13 over 8 rounds), the same
    translations. Equal to `written_out` to rounding (tests/nn/test_attention.py)."""
    # q: (B, H, 1, d_k), k: (B, H, T_k, d_k), v: (B, H, T_k, d_v) -> (B, H, 1, d_v)
    if mask is CAUSAL:  # the one query is the last position: it sees every key
        mask = None
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = masked((q * k).sum(-1).unsqueeze(-2) * scale, mask)  # (B, H, 1, T_k)
    weights = dropout(scores.softmax(dim=-1), dropout_p)
    return (weights.transpose(-2, -1) * v).sum(-2, keepdim=True)


def fused(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The equation by torch's fused kernel (flash or memory-efficient where it can)."""
    kw = {"dropout_p": dropout_p, "scale": scale}
    if mask is CAUSAL:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)


def auto(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """The path that measured faster for these inputs (`auto_impl`)."""
    kernel = {"math": written_out, "sdpa": fused, "one_query": one_query}[auto_impl(q, k)]
    return kernel(q, k, v, mask, dropout_p, scale)


KERNELS: dict[str, Kernel] = {"auto": auto, "sdpa": fused, "math": written_out}


def kernel(impl: str) -> Kernel:
    """The kernel named `impl` (one of ATTENTION_IMPLS)."""
    if impl not in KERNELS:
        raise ValueError(f"attention impl={impl!r} is unknown; expected one of {ATTENTION_IMPLS}")
    return KERNELS[impl]


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Mask = None,
    dropout_p: float = 0.0,
    impl: str = "auto",
    scale: float | None = None,
) -> Tensor:
    """Scaled dot-product attention by the path `impl`; `scale` replaces 1 / sqrt(d_k)."""
    # q: (B, H, T_q, d_k), k: (B, H, T_k, d_k), v: (B, H, T_k, d_v) -> (B, H, T_q, d_v)
    return kernel(impl)(q, k, v, mask, dropout_p, scale)


def use_attention(model: nn.Module, impl: str) -> None:
    """Run every attention of `model` by the path `impl` (one of ATTENTION_IMPLS)."""
    chosen = kernel(impl)
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.kernel = chosen

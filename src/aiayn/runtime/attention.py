"""Which kernel runs each attention: the paper's equation written out, or torch's fused one.

`MultiHeadAttention` runs the equation through its `kernel` (`aiayn.nn.attention`); this
module holds the kernels a run chooses among (`train.attn_impl`) and sets them on a model.
`math` is the equation written out; `sdpa` is torch's fused `F.scaled_dot_product_attention`
(tests prove them equal); `auto` picks one per call, by what was measured faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.nn.attention import Kernel, MultiHeadAttention, written_out
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


def auto_impl(q: Tensor, k: Tensor) -> str:
    """The path that measured faster for these inputs (see AUTO_MATH_UP_TO)."""
    short = k.size(-2) <= AUTO_MATH_UP_TO
    cpu_wins = q.dtype == torch.bfloat16 or q.size(-2) == 1
    return "math" if q.device.type == "cpu" and short and cpu_wins else "sdpa"


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
    kernel = written_out if auto_impl(q, k) == "math" else fused
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

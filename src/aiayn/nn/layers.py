"""Encoder and decoder layers (paper §3.1): sub-layers joined by residual connections and norms.

The paper normalises after the residual sum (post-norm): x = Norm(x + Dropout(Sublayer(x))).
Pre-norm (Xiong et al. 2020) normalises the sub-layer's input instead:
x = x + Dropout(Sublayer(Norm(x))).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from aiayn.nn.attention import CrossAttention, SelfAttention
from aiayn.nn.cache import LayerCache
from aiayn.nn.dropout import Dropout
from aiayn.nn.masks import Mask
from aiayn.nn.positional import Rotation

Sublayer = Callable[[Tensor], Tensor]


def post_norm(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return norm(x + drop(sublayer(x)))


def pre_norm(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return x + drop(sublayer(norm(x)))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward; with a causal mask, also a GPT-style decoder layer."""

    def __init__(
        self,
        self_attn: SelfAttention,
        ffn: nn.Module,
        make_norm: Callable[[], nn.Module],
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn, self.ffn = self_attn, ffn
        self.norm1, self.norm2 = make_norm(), make_norm()
        self.drop = Dropout(dropout)
        self.residual = pre_norm if norm_first else post_norm

    def forward(
        self,
        x: Tensor,
        mask: Mask = None,
        rotation: Rotation | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model)
        attn = partial(self.self_attn, mask=mask, rotation=rotation, cache=cache)
        x = self.residual(x, attn, self.norm1, self.drop)
        return self.residual(x, self.ffn, self.norm2, self.drop)


class DecoderLayer(nn.Module):
    """Masked self-attention, attention over the encoder's output, then feed-forward."""

    def __init__(
        self,
        self_attn: SelfAttention,
        cross_attn: CrossAttention,
        ffn: nn.Module,
        make_norm: Callable[[], nn.Module],
        dropout: float = 0.1,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn, self.cross_attn, self.ffn = self_attn, cross_attn, ffn
        self.norm1, self.norm2, self.norm3 = make_norm(), make_norm(), make_norm()
        self.drop = Dropout(dropout)
        self.residual = pre_norm if norm_first else post_norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Mask = None,
        memory_mask: Tensor | None = None,
        rotation: Rotation | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        # x: (B, T, d_model), memory: (B, S, d_model) -> (B, T, d_model)
        attn = partial(self.self_attn, mask=self_mask, rotation=rotation, cache=cache)
        x = self.residual(x, attn, self.norm1, self.drop)
        cross = partial(self.cross_attn, memory=memory, mask=memory_mask, cache=cache)
        x = self.residual(x, cross, self.norm2, self.drop)
        return self.residual(x, self.ffn, self.norm3, self.drop)

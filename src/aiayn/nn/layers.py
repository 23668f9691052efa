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
from aiayn.nn.dropout import Dropout
from aiayn.nn.masks import Mask
from aiayn.nn.positional import Rotation
from aiayn.nn.seams import LayerState

Sublayer = Callable[[Tensor], Tensor]


def post_norm(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return norm(x + drop(sublayer(x)))


def pre_norm(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return x + drop(sublayer(norm(x)))


# Without the residual connection (an ablation: what the skip path is worth), the sub-layer's
# output replaces its input.
def post_norm_alone(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return norm(drop(sublayer(x)))


def pre_norm_alone(x: Tensor, sublayer: Sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
    return drop(sublayer(norm(x)))


CONNECTIONS = {  # (norm_first, residual) -> how a sub-layer joins the stream
    (False, True): post_norm,
    (True, True): pre_norm,
    (False, False): post_norm_alone,
    (True, False): pre_norm_alone,
}


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward; with a causal mask, also a GPT-style decoder layer.
    Without `ffn` (an ablation) the layer is its attention sub-layer alone."""

    def __init__(
        self,
        self_attn: SelfAttention,
        ffn: nn.Module | None,
        make_norm: Callable[[], nn.Module],
        dropout: float = 0.1,
        norm_first: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn, self.ffn = self_attn, ffn
        self.norm1, self.norm2 = make_norm(), None if ffn is None else make_norm()
        self.drop = Dropout(dropout)
        self.residual = CONNECTIONS[norm_first, residual]

    def forward(
        self,
        x: Tensor,
        mask: Mask = None,
        rotation: Rotation | None = None,
        cache: LayerState | None = None,
    ) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model)
        attn = partial(self.self_attn, mask=mask, rotation=rotation, cache=cache)
        x = self.residual(x, attn, self.norm1, self.drop)
        return x if self.ffn is None else self.residual(x, self.ffn, self.norm2, self.drop)


class DecoderLayer(nn.Module):
    """Masked self-attention, attention over the encoder's output, then feed-forward (left
    out without `ffn`)."""

    def __init__(
        self,
        self_attn: SelfAttention,
        cross_attn: CrossAttention,
        ffn: nn.Module | None,
        make_norm: Callable[[], nn.Module],
        dropout: float = 0.1,
        norm_first: bool = False,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn, self.cross_attn, self.ffn = self_attn, cross_attn, ffn
        self.norm1, self.norm2 = make_norm(), make_norm()
        self.norm3 = None if ffn is None else make_norm()
        self.drop = Dropout(dropout)
        self.residual = CONNECTIONS[norm_first, residual]

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Mask = None,
        memory_mask: Tensor | None = None,
        rotation: Rotation | None = None,
        cache: LayerState | None = None,
    ) -> Tensor:
        # x: (B, T, d_model), memory: (B, S, d_model) -> (B, T, d_model)
        attn = partial(self.self_attn, mask=self_mask, rotation=rotation, cache=cache)
        x = self.residual(x, attn, self.norm1, self.drop)
        cross = partial(self.cross_attn, memory=memory, mask=memory_mask, cache=cache)
        x = self.residual(x, cross, self.norm2, self.drop)
        return x if self.ffn is None else self.residual(x, self.ffn, self.norm3, self.drop)

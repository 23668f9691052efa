"""Stacks of N identical layers (paper §3.1) over embedded tokens, and the two joined.

A stack adds position information, applies dropout to the sum (§5.4), runs its layers and,
when given one, a final norm (needed with pre-norm; `nn.Transformer` adds one in both placements).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from aiayn.nn.dropout import Dropout
from aiayn.nn.layers import DecoderLayer, EncoderLayer
from aiayn.nn.masks import Mask, attention_mask
from aiayn.nn.positional import PositionalEncoding, Rotation
from aiayn.nn.seams import StackState


def add_positions(
    pos: PositionalEncoding,
    drop: Callable[[Tensor], Tensor],
    x: Tensor,
    pad_mask: Tensor | None,
    causal: bool,
    start: int = 0,
    window: int | None = None,
) -> tuple[Tensor, Mask, Rotation | None]:
    """Position information for a stack's input: the embedded sum, the self-attention mask, RoPE.

    `start` positions are already cached; x holds the T that follow them. `drop` is applied
    to the sum (with BERT's embedding norm before it, when the stack has one).
    """
    # x: (B, T, d_model) -> (B, T, d_model), mask broadcastable to (B, H, T, start + T) or CAUSAL
    t_k = start + x.size(1)
    keys = torch.arange(t_k, device=x.device)
    queries = keys[start:]
    bias = pos.score_bias(queries, keys)
    mask = attention_mask(x.size(1), t_k, pad_mask, causal, bias, x.device, window)
    return drop(pos.embed(x, queries)), mask, pos.rotation(queries)


class Encoder(nn.Module):
    """N encoder layers; `causal=True` turns it into the decoder of a decoder-only model."""

    def __init__(
        self,
        layers: list[EncoderLayer],
        pos: PositionalEncoding,
        norm: nn.Module | None = None,
        dropout: float = 0.1,
        embed_norm: nn.Module | None = None,
        causal: bool = False,
        window: int | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.pos, self.causal, self.window = pos, causal, window
        self.norm = norm or nn.Identity()
        self.embed_norm = embed_norm or nn.Identity()
        self.drop = Dropout(dropout)

    def embed_out(self, x: Tensor) -> Tensor:
        return self.drop(self.embed_norm(x))

    def forward(
        self, x: Tensor, pad_mask: Tensor | None = None, cache: StackState | None = None
    ) -> Tensor:
        # x: (B, T, d_model) token embeddings, pad_mask: (B, T) True at padding -> (B, T, d_model);
        # a decoding state places x after the positions it holds (`aiayn.nn.seams`)
        if cache is None:
            x, mask, rotation = add_positions(
                self.pos, self.embed_out, x, pad_mask, self.causal, 0, self.window
            )
        else:
            x, mask, rotation = cache.positions(
                self.pos, self.embed_out, x, pad_mask, self.causal, self.window
            )
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rotation, None if cache is None else cache.layer(i))
        return self.norm(x)


class Decoder(nn.Module):
    """N decoder layers: causal self-attention over the target, cross-attention to the memory."""

    def __init__(
        self,
        layers: list[DecoderLayer],
        pos: PositionalEncoding,
        norm: nn.Module | None = None,
        dropout: float = 0.1,
        embed_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.pos = pos
        self.norm = norm or nn.Identity()
        self.embed_norm = embed_norm or nn.Identity()
        self.drop = Dropout(dropout)

    def embed_out(self, x: Tensor) -> Tensor:
        return self.drop(self.embed_norm(x))

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_pad_mask: Tensor | None = None,
        pad_mask: Tensor | None = None,
        cache: StackState | None = None,
    ) -> Tensor:
        # x: (B, T, d_model) target embeddings, memory: (B, S, d_model) -> (B, T, d_model)
        if cache is None:
            x, self_mask, rotation = add_positions(self.pos, self.embed_out, x, pad_mask, True)
        else:
            x, self_mask, rotation = cache.positions(
                self.pos, self.embed_out, x, pad_mask, True, None
            )
        memory_mask = attention_mask(x.size(1), memory.size(1), memory_pad_mask)
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache.layer(i)
            x = layer(x, memory, self_mask, memory_mask, rotation, layer_cache)
        return self.norm(x)


class EncoderDecoderStack(nn.Module):
    """The encoder-decoder Transformer of Figure 1, from embedded inputs to decoder states."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_pad_mask: Tensor | None = None,
        tgt_pad_mask: Tensor | None = None,
    ) -> Tensor:
        # src: (B, S, d_model), tgt: (B, T, d_model), pad masks True at padding -> (B, T, d_model)
        memory = self.encoder(src, src_pad_mask)
        return self.decoder(tgt, memory, src_pad_mask, tgt_pad_mask)

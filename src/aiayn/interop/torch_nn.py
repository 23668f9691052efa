"""Bring a `torch.nn.Transformer` over to aiayn's own modules, weights and all.

Returns the encoder-decoder stack without embeddings, the same part `nn.Transformer` covers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.config import TrainConfig
from aiayn.models.build import build_decoder, build_encoder
from aiayn.models.config import ModelConfig
from aiayn.nn.attention import CrossAttention, SelfAttention
from aiayn.nn.stack import EncoderDecoderStack
from aiayn.runtime.attention import use_attention

_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", F.relu: "relu", F.gelu: "gelu"}


def config_of(m: nn.Transformer) -> ModelConfig:
    """The aiayn config describing `m`'s encoder-decoder stack."""
    enc = m.encoder.layers[0]
    activation = enc.activation
    if isinstance(activation, nn.Module):
        activation = type(activation).__name__.lower()
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"nn.Transformer activation {activation!r} has no aiayn equivalent; "
            f"expected relu or gelu"
        )
    return ModelConfig(
        d_model=enc.self_attn.embed_dim,
        n_heads=enc.self_attn.num_heads,
        d_ff=enc.linear1.out_features,
        n_layers=len(m.encoder.layers),
        n_decoder_layers=len(m.decoder.layers),
        dropout=0.0,
        activation=_ACTIVATIONS[activation],
        positional="none",
        norm_first=enc.norm_first,
        norm_eps=enc.norm1.eps,
        final_norm=m.encoder.norm is not None,
        bias=enc.linear1.bias is not None,
    )


def _load(dst: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    """Set a Linear or norm's weight and bias."""
    dst.weight.copy_(weight)
    if bias is not None:
        dst.bias.copy_(bias)


def _copy(dst: nn.Module, src: nn.Module) -> None:
    _load(dst, src.weight, src.bias)


def _copy_self_attn(dst: SelfAttention, src: nn.MultiheadAttention) -> None:
    _load(dst.qkv, src.in_proj_weight, src.in_proj_bias)
    _copy(dst.out, src.out_proj)


def _copy_cross_attn(dst: CrossAttention, src: nn.MultiheadAttention) -> None:
    # nn.MultiheadAttention stacks [W_q; W_k; W_v]; aiayn keeps W_q apart from the fused [W_k; W_v]
    d, bias = src.embed_dim, src.in_proj_bias
    _load(dst.q, src.in_proj_weight[:d], None if bias is None else bias[:d])
    _load(dst.kv, src.in_proj_weight[d:], None if bias is None else bias[d:])
    _copy(dst.out, src.out_proj)


@torch.no_grad()
def from_nn_transformer(m: nn.Transformer) -> EncoderDecoderStack:
    """An aiayn encoder-decoder stack computing what `m` computes, with `m`'s weights.

    Its forward takes (src (B, S, d), tgt (B, T, d), src_pad_mask, tgt_pad_mask), pad masks
    True at padding, applies the causal mask to the target itself, and returns (B, T, d).
    """
    if not m.encoder.layers[0].self_attn.batch_first:
        raise ValueError(
            "nn.Transformer must be built with batch_first=True; got batch_first=False"
        )
    cfg = config_of(m)
    stack = EncoderDecoderStack(build_encoder(cfg), build_decoder(cfg))
    for ours, theirs in zip(stack.encoder.layers, m.encoder.layers, strict=True):
        _copy_self_attn(ours.self_attn, theirs.self_attn)
        _copy(ours.ffn.w_in, theirs.linear1)
        _copy(ours.ffn.w_out, theirs.linear2)
        _copy(ours.norm1, theirs.norm1)
        _copy(ours.norm2, theirs.norm2)
    for ours, theirs in zip(stack.decoder.layers, m.decoder.layers, strict=True):
        _copy_self_attn(ours.self_attn, theirs.self_attn)
        _copy_cross_attn(ours.cross_attn, theirs.multihead_attn)
        _copy(ours.ffn.w_in, theirs.linear1)
        _copy(ours.ffn.w_out, theirs.linear2)
        for i in (1, 2, 3):
            _copy(getattr(ours, f"norm{i}"), getattr(theirs, f"norm{i}"))
    if cfg.has_final_norm:
        _copy(stack.encoder.norm, m.encoder.norm)
        _copy(stack.decoder.norm, m.decoder.norm)
    # no run config to name the attention path: a run's default (train.attn_impl)
    use_attention(stack, TrainConfig.attn_impl)
    return stack

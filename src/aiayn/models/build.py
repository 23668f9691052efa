"""Building blocks shared by the three families: token embeddings, stacks from a config, init."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from aiayn.models.config import ModelConfig
from aiayn.nn.attention import CrossAttention, SelfAttention
from aiayn.nn.feedforward import feed_forward
from aiayn.nn.layers import DecoderLayer, EncoderLayer
from aiayn.nn.norm import norm_factory
from aiayn.nn.positional import positional_encoding
from aiayn.nn.stack import Decoder, Encoder


class TokenEmbedding(nn.Module):
    """Token ids to vectors, multiplied by sqrt(d_model) as in §3.4 when `scale` is set."""

    def __init__(self, vocab_size: int, d_model: int, scale: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        self.scale = math.sqrt(d_model) if scale else 1.0

    def forward(self, tokens: Tensor) -> Tensor:
        # tokens: (B, T) -> (B, T, d_model)
        return nn.functional.embedding(tokens, self.weight) * self.scale

    def reset_parameters(self) -> None:
        # scaled embeddings start at unit variance after the sqrt(d_model) factor
        std = 1.0 / self.scale if self.scale != 1.0 else 0.02
        nn.init.normal_(self.weight, std=std)


def _attention_options(cfg: ModelConfig) -> dict:
    return {
        "n_kv_heads": cfg.n_kv_heads,
        "d_head": cfg.d_head,
        "bias": cfg.bias,
        "qkv_bias": cfg.qkv_bias,
        "dropout": cfg.attn_dropout,
        "scale_scores": cfg.scale_scores,
    }


def _feed_forward(cfg: ModelConfig) -> nn.Module | None:
    """The position-wise network of one layer; none where an ablation takes it away."""
    return (
        feed_forward(cfg.activation, cfg.d_model, cfg.d_ff, cfg.bias) if cfg.feedforward else None
    )


def _stack_parts(cfg: ModelConfig):
    make_norm = norm_factory(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
    pos = positional_encoding(
        cfg.positional,
        cfg.d_model,
        cfg.n_heads,
        cfg.max_len,
        cfg.rope_base,
        cfg.d_head,
        cfg.rope_scaling,
    )
    return {
        "pos": pos,
        "norm": make_norm() if cfg.has_final_norm else None,
        "embed_norm": make_norm() if cfg.embed_norm else None,
        "dropout": cfg.dropout,
    }, make_norm


def build_encoder(cfg: ModelConfig, causal: bool = False) -> Encoder:
    """The encoder stack of `cfg` (causal: the stack of a decoder-only model)."""
    parts, make_norm = _stack_parts(cfg)
    layers = [
        EncoderLayer(
            SelfAttention(cfg.d_model, cfg.n_heads, **_attention_options(cfg)),
            _feed_forward(cfg),
            make_norm,
            cfg.dropout,
            cfg.norm_first,
            cfg.residual,
        )
        for _ in range(cfg.n_layers)
    ]
    return Encoder(layers, causal=causal, window=cfg.attn_window, **parts)


def build_decoder(cfg: ModelConfig) -> Decoder:
    """The decoder stack of `cfg`, with cross-attention to the encoder's output."""
    parts, make_norm = _stack_parts(cfg)
    layers = [
        DecoderLayer(
            SelfAttention(cfg.d_model, cfg.n_heads, **_attention_options(cfg)),
            CrossAttention(cfg.d_model, cfg.n_heads, **_attention_options(cfg)),
            _feed_forward(cfg),
            make_norm,
            cfg.dropout,
            cfg.norm_first,
            cfg.residual,
        )
        for _ in range(cfg.decoder_layers)
    ]
    return Decoder(layers, **parts)


def init_weights(model: nn.Module) -> None:
    """Xavier-uniform linear maps (as torch's nn.Transformer), zero biases, normal embeddings."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():  # last, so that an output layer tied to an embedding keeps its init
        if isinstance(m, TokenEmbedding):
            m.reset_parameters()


def materialise(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Give `model`, built on the meta device, the tensors of `state` as they are (no copy, no
    cast), tie again what was tied, and initialise what `state` lacks (a new task head)."""
    tied = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), []).append(name)
    model.load_state_dict(state, strict=False, assign=True)
    for names in tied.values():
        for alias in names[1:]:
            owner, _, attr = alias.rpartition(".")
            setattr(model.get_submodule(owner), attr, model.get_parameter(names[0]))
    dtype = next(iter(state.values())).dtype
    for m in model.modules():
        if any(t.is_meta for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]):
            m.to_empty(device="cpu", recurse=False)
            init_weights(m)
            m.to(dtype)

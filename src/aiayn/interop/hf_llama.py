"""Hugging Face configs of the Llama family (Llama, Mistral, Qwen2) as aiayn's ModelConfig.

All three are aiayn's decoder-only model with pre-norm RMSNorm, RoPE in the half-split
layout, a SwiGLU feed-forward net, grouped-query attention and no biases; they differ in
Llama 3's RoPE scaling, Mistral's sliding-window attention and Qwen2's query/key/value
biases. Anything else a config asks for is refused by name (aiayn.interop.hf_rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiayn.interop.hf_rules import HFConfig, Rules, words
from aiayn.models import ModelConfig

COMMON = words(
    "hidden_size num_attention_heads num_key_value_heads intermediate_size num_hidden_layers "
    "hidden_act max_position_embeddings rms_norm_eps head_dim rope_theta rope_scaling "
    "rope_parameters tie_word_embeddings"
)
HARMLESS = words("attention_dropout")  # aiayn's inference has no dropout; training keeps it
GATED = {"silu": "swiglu", "gelu": "geglu"}  # gate_proj's activation in HF's gated MLP
# what RoPE's parameters may hold, by rope_type (old configs call it "type")
ROPE_KEYS = {
    "default": {"rope_type", "type", "rope_theta"},
    "llama3": {
        "rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
        "original_max_position_embeddings",
    },
}  # fmt: skip


def rope_fields(hf: HFConfig) -> dict[str, Any]:
    """rope_base and Llama 3's scaling from either layout: rope_theta with rope_scaling (most
    published checkpoints) or transformers 5's rope_parameters."""
    params = hf.get("rope_parameters", dict, None) or hf.get("rope_scaling", dict, None) or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if not isinstance(kind, str) or kind not in ROPE_KEYS:
        raise ValueError(
            f"{hf.path}: rope type {kind!r} is not supported (aiayn represents "
            f"{' or '.join(map(repr, ROPE_KEYS))})"
        )
    extra = sorted(set(params) - ROPE_KEYS[kind])
    if extra:
        raise ValueError(f"{hf.path}: RoPE parameter {extra[0]!r} is unknown to aiayn for {kind}")
    sub = HFConfig(params, hf.path)
    fields = {"rope_base": hf.get("rope_theta", float, sub.get("rope_theta", float, 10000.0))}
    if kind == "llama3":
        fields |= {
            "rope_factor": sub.need("factor", float),
            "rope_low_freq_factor": sub.need("low_freq_factor", float),
            "rope_high_freq_factor": sub.need("high_freq_factor", float),
            "rope_original_max_len": sub.need("original_max_position_embeddings", int, 1),
        }
    return fields


def llama_config(hf: HFConfig, **extra: Any) -> ModelConfig:
    d, heads = hf.need("hidden_size", int, 1), hf.need("num_attention_heads", int, 1)
    head_dim = hf.get("head_dim", int, None, 1) or d // heads
    act = hf.get("hidden_act", str, "silu")
    if act not in GATED:
        raise ValueError(
            f"{hf.path}: hidden_act={act!r} has no aiayn equivalent; known: {list(GATED)}"
        )
    return ModelConfig(
        arch="decoder_only",
        vocab_size=hf.need("vocab_size", int, 1),
        d_model=d,
        n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads", int, heads, 1),
        head_dim=None if head_dim * heads == d else head_dim,
        d_ff=hf.need("intermediate_size", int, 1),
        n_layers=hf.need("num_hidden_layers", int, 1),
        dropout=0.0,
        attn_dropout=hf.get("attention_dropout", float, 0.0),
        activation=GATED[act],
        positional="rope",
        max_len=hf.need("max_position_embeddings", int, 1),
        norm="rmsnorm",
        norm_first=True,
        norm_eps=hf.get("rms_norm_eps", float, 1e-6),
        bias=False,
        scale_embeddings=False,
        tie_output=hf.get("tie_word_embeddings", bool, False),
        pad_id=hf.pad_id(),
        **rope_fields(hf),
        **extra,
    )


def mistral_config(hf: HFConfig) -> ModelConfig:
    window = hf.get("sliding_window", int, None, 1)  # null: no window
    positions = hf.need("max_position_embeddings", int, 1)
    return llama_config(hf, attn_window=window if window and window < positions else None)


def qwen2_config(hf: HFConfig) -> ModelConfig:
    layers = hf.get("layer_types", list, [])
    if any(kind != "full_attention" for kind in layers):
        raise ValueError(f"{hf.path}: layer_types other than full_attention are unsupported")
    return llama_config(hf, qkv_bias=True)


LLAMA = Rules(
    mapped=COMMON,
    harmless=HARMLESS,
    fixed={"attention_bias": (False,), "mlp_bias": (False,), "pretraining_tp": (1,)},
)
MISTRAL = Rules(mapped=COMMON | {"sliding_window"}, harmless=HARMLESS)
# without use_sliding_window, Qwen2's window settings are unused
QWEN2 = Rules(
    mapped=COMMON | {"layer_types"},
    harmless=HARMLESS | {"sliding_window", "max_window_layers"},
    fixed={"use_sliding_window": (False,)},
)
LLAMA_FAMILY: dict[str, tuple[Rules, Callable[[HFConfig], ModelConfig]]] = {
    "llama": (LLAMA, llama_config),
    "mistral": (MISTRAL, mistral_config),
    "qwen2": (QWEN2, qwen2_config),
}

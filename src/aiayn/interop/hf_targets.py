"""The further `transformers` classes an export may choose when a family's first cannot compute
the run, and the one change of layout that lets more runs map exactly.

- A pre-norm translator (configs/demo.toml, multi30k.toml) goes to
  `PegasusForConditionalGeneration`: pre-norm layers, a norm after each stack, positions
  counted from 0 as sines then cosines, a tied output with a bias, like Marian otherwise.
- A decoder-only model with RMSNorm, RoPE, a gated feed-forward net and no biases
  (configs/shakespeare_char.toml) goes to `LlamaForCausalLM`, the import's plan read backwards;
  embeddings scaled by sqrt(d_model) are written scaled, beside an untied output layer.
- The paper's interleaved sines (`positional = "sinusoidal"`) are the same values as Marian's
  and Pegasus' sines-then-cosines with the model dimension's coordinates reordered. A model's
  residual stream may be reordered by any fixed permutation without changing what it computes
  (norms act on each coordinate alike; every map into the stream has its rows reordered, every
  map out of it its columns), so such a model is written with the coordinates ordered
  0, 2, 4, ..., 1, 3, 5, ... and computes the same outputs in the class.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from aiayn.models import ModelConfig

# the model_types a family's export may fall back on, in order, after its own
ALTERNATIVES = {"marian": ("pegasus",), "gpt2": ("llama",)}
CLASSES = {"pegasus": "PegasusForConditionalGeneration", "llama": "LlamaForCausalLM"}
GATED = {"swiglu": "silu", "geglu": "gelu"}
# the common needs a class lifts: Llama has grouped-query attention and its own head_dim
FREE = {"llama": ("n_kv_heads", "head_dim")}


# what each class computes, beyond or in place of a family's common needs
# (aiayn.interop.hf_export.needs): each ModelConfig field and the values allowed
NEEDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "pegasus": {
        "norm_first": (True,),
        "final_norm": (None, True),
        "positional": ("sinusoidal_halves", "sinusoidal"),
        "embed_norm": (False,),
        "share_embeddings": (True,),
        "tie_output": (True,),
        "norm_eps": (1e-5,),
    },
    "llama": {
        "norm": ("rmsnorm",),
        "norm_first": (True,),
        "final_norm": (None, True),
        "positional": ("rope",),
        "activation": tuple(GATED),
        "bias": (False,),
        "qkv_bias": (None, False),
        "embed_norm": (False,),
        "output_bias": (False,),
        "rope_factor": (1.0,),  # no Llama 3 scaling (not written yet)
    },
}


def hf_config(m: ModelConfig, kind: str, special: dict[str, int], act: str) -> dict[str, Any]:
    base = {"architectures": [CLASSES[kind]], "model_type": kind, "dtype": "float32"}
    if kind == "llama":
        return base | {
            "vocab_size": m.vocab_size, "hidden_size": m.d_model,
            "intermediate_size": m.d_ff, "num_hidden_layers": m.n_layers,
            "num_attention_heads": m.n_heads, "num_key_value_heads": m.kv_heads,
            "head_dim": m.d_head, "hidden_act": GATED[m.activation],
            "max_position_embeddings": m.max_len, "rms_norm_eps": m.norm_eps,
            "rope_theta": m.rope_base,
            "tie_word_embeddings": m.tie_output and not m.scale_embeddings,
            "attention_bias": False, "mlp_bias": False, "attention_dropout": m.attn_dropout,
            "bos_token_id": special["bos"], "eos_token_id": special["eos"],
            "pad_token_id": special["pad"],
        }  # fmt: skip
    return base | {
        "vocab_size": m.vocab_size, "d_model": m.d_model, "encoder_layers": m.n_layers,
        "decoder_layers": m.decoder_layers, "encoder_attention_heads": m.n_heads,
        "decoder_attention_heads": m.n_heads, "encoder_ffn_dim": m.d_ff,
        "decoder_ffn_dim": m.d_ff, "activation_function": act, "dropout": m.dropout,
        "attention_dropout": m.attn_dropout, "max_position_embeddings": m.max_len,
        "scale_embedding": m.scale_embeddings, "tie_word_embeddings": True,
        "pad_token_id": m.pad_id, "eos_token_id": special["eos"],
        "decoder_start_token_id": special["bos"], "forced_eos_token_id": None,
        # what Pegasus' published configs say and CTranslate2's converter reads (its
        # PegasusLoader builds the layers from them); transformers' class ignores them
        "normalize_before": True, "normalize_embedding": False,
    }  # fmt: skip


def pegasus_extra(m: ModelConfig, prefix: str) -> dict[str, str]:
    """Pegasus' norms after the stacks, beyond Marian's naming plan."""
    return {
        f"transformer.{side}.norm.{p}": f"{prefix}{side}.layer_norm.{p}"
        for side in ("encoder", "decoder")
        for p in ("weight", "bias")
    }


def unscaled(m: ModelConfig) -> ModelConfig:
    """`m` as Llama holds it: Llama does not scale its embeddings by sqrt(d_model), so a model
    that does is written with the factor multiplied into an untied copy of its embedding."""
    return dataclasses.replace(m, tie_output=False) if m.scale_embeddings else m


def scale_embedding(state: dict[str, Tensor], m: ModelConfig) -> dict[str, Tensor]:
    if not m.scale_embeddings:
        return state
    return state | {"embed.weight": state["embed.weight"] * math.sqrt(m.d_model)}


# where each tensor of an encoder-decoder meets the residual stream: the dimension to reorder
INTO_STREAM = (".out.weight", ".out.bias", ".ffn.w_out.weight", ".ffn.w_out.bias")
NORMS = ("norm1", "norm2", "norm3", ".norm.")


def halves_order(d_model: int) -> Tensor:
    """The coordinates of the interleaved layout in the order of the halves layout."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def reorder_stream(state: dict[str, Tensor], d_model: int) -> dict[str, Tensor]:
    """`state` of an encoder-decoder with its residual stream's coordinates reordered from the
    interleaved sines' layout to the halves' (see the module's docstring)."""
    order = halves_order(d_model)
    out = {}
    for name, t in state.items():
        if name == "generator.bias":
            out[name] = t
        elif any(n in name for n in NORMS) or name.endswith(INTO_STREAM):
            out[name] = t.index_select(0, order)  # a norm's gain, or rows written to the stream
        elif t.dim() == 1:
            out[name] = t  # the bias of a map read from the stream
        elif t.dim() == 2 and t.size(1) == d_model:
            out[name] = t.index_select(1, order)  # embeddings, maps read from the stream
        else:
            raise ValueError(f"aiayn tensor {name}: no known place in the residual stream")
    return out

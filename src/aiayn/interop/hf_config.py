"""Hugging Face `config.json` files translated into aiayn's ModelConfig, trusting nothing.

Each format has an allow-list: keys it maps, keys that do not change what the model computes
(bookkeeping, training-only settings), and keys whose value must be the one aiayn represents
(BERT's absolute positions, GPT-2's attention scaled by sqrt(d_head) alone, Marian's post-norm
layers). Any other key or value is refused by name: a config aiayn cannot represent would
otherwise load and give silently different outputs. Missing keys and wrong types are errors
naming the file and key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiayn.models import ModelConfig

ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
}
MAX_CONFIG_BYTES = 1 << 20
# Keys of any format that say nothing about what the model computes.
BOOKKEEPING = {
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype",
    "use_cache", "initializer_range", "init_std", "label2id", "bos_token_id", "eos_token_id",
    "decoder_start_token_id", "forced_eos_token_id", "forced_bos_token_id", "max_length",
    "num_beams", "early_stopping", "length_penalty", "min_length", "problem_type",
    "classifier_dropout", "gradient_checkpointing", "output_past", "task_specific_params",
    "finetuning_task", "tokenizer_class", "prefix", "return_dict", "output_attentions",
    "output_hidden_states", "torchscript", "chunk_size_feed_forward", "is_encoder_decoder",
    "tie_encoder_decoder", "num_labels", "id2label", "pad_token_id", "vocab_size", "model_type",
}  # fmt: skip


@dataclass(frozen=True)
class Rules:
    """What a format's config may hold beyond BOOKKEEPING: `mapped` keys are read by its
    translation, `harmless` ones change only training (dropout aiayn lacks, say), and each
    `fixed` key must have one of the values given."""

    mapped: frozenset[str]
    harmless: frozenset[str] = frozenset()
    fixed: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


class HFConfig:
    """A parsed config.json whose values are read with their types checked."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path

    def need(self, key: str, kind: type) -> Any:
        if self.data.get(key) is None:
            raise ValueError(f"{self.path}: key {key!r} is missing")
        return self.get(key, kind, None)

    def get(self, key: str, kind: type, default: Any) -> Any:
        """The value of `key` (absent or null: `default`), refused unless of type `kind`."""
        value = self.data.get(key)
        if value is None:
            return default
        ok = {
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        }.get(kind, lambda v: isinstance(v, kind))(value)
        if not ok or (kind is float and not math.isfinite(value)):
            raise ValueError(f"{self.path}: {key}={value!r} is not {kind.__name__}")
        return value

    def check(self, rules: Rules) -> None:
        known = BOOKKEEPING | rules.mapped | rules.harmless | set(rules.fixed)
        for key in sorted(self.data):
            if key not in known:
                kind = self.data["model_type"]
                raise ValueError(
                    f"{self.path}: key {key!r} is unknown to aiayn's {kind} importer; refused "
                    "rather than guessed at"
                )
        for key, allowed in rules.fixed.items():
            if key in self.data and self.data[key] not in allowed:
                raise ValueError(
                    f"{self.path}: {key}={self.data[key]!r} is not supported (aiayn "
                    f"represents {' or '.join(map(repr, allowed))})"
                )

    def activation(self, key: str, default: str) -> str:
        name = self.get(key, str, default)
        if name not in ACTIVATIONS:
            raise ValueError(
                f"{self.path}: {key}={name!r} has no aiayn equivalent; known: {list(ACTIVATIONS)}"
            )
        return ACTIVATIONS[name]

    def labels(self) -> list[str] | None:
        """The class names of id2label in id order, or None."""
        raw = self.get("id2label", dict, None)
        if raw is None:
            return None
        if not all(isinstance(v, str) for v in raw.values()) or sorted(raw) != sorted(
            str(i) for i in range(len(raw))
        ):
            raise ValueError(f"{self.path}: id2label is not a table of ids 0..N-1 to names")
        return [raw[str(i)] for i in range(len(raw))]


# -- BERT ----------------------------------------------------------------------------------

BERT = Rules(
    mapped=words(
        "hidden_size num_attention_heads intermediate_size num_hidden_layers "
        "hidden_dropout_prob attention_probs_dropout_prob hidden_act "
        "max_position_embeddings layer_norm_eps type_vocab_size"
    ),
    fixed={
        "position_embedding_type": ("absolute",),
        "is_decoder": (False,),
        "add_cross_attention": (False,),
        "tie_word_embeddings": (True, False),  # BERT has no output layer to tie
    },
)


def bert_config(hf: HFConfig) -> ModelConfig:
    labels = hf.labels()
    return ModelConfig(
        arch="encoder_classifier",
        vocab_size=hf.need("vocab_size", int),
        d_model=hf.need("hidden_size", int),
        n_heads=hf.need("num_attention_heads", int),
        d_ff=hf.need("intermediate_size", int),
        n_layers=hf.need("num_hidden_layers", int),
        dropout=hf.get("hidden_dropout_prob", float, 0.1),
        attn_dropout=hf.get("attention_probs_dropout_prob", float, 0.1),
        activation=hf.activation("hidden_act", "gelu"),
        positional="learned",
        max_len=hf.need("max_position_embeddings", int),
        norm_first=False,
        norm_eps=hf.get("layer_norm_eps", float, 1e-12),
        scale_embeddings=False,
        embed_norm=True,
        n_segments=hf.get("type_vocab_size", int, 2),
        pad_id=hf.get("pad_token_id", int, 0) or 0,
        n_classes=len(labels) if labels else 2,
        pooling="cls",
    )


# -- GPT-2 ---------------------------------------------------------------------------------

GPT2 = Rules(
    mapped=words(
        "n_embd n_head n_inner n_layer resid_pdrop attn_pdrop activation_function "
        "n_positions n_ctx layer_norm_epsilon tie_word_embeddings"
    ),
    # embeddings' dropout (aiayn uses resid_pdrop); the heads of GPT2DoubleHeadsModel; an
    # upcast that changes rounding only
    harmless=words(
        "embd_pdrop summary_type summary_use_proj summary_activation "
        "summary_proj_to_labels summary_first_dropout reorder_and_upcast_attn"
    ),
    fixed={
        "scale_attn_weights": (True,),
        "scale_attn_by_inverse_layer_idx": (False,),
        "add_cross_attention": (False,),
    },
)


def gpt2_config(hf: HFConfig) -> ModelConfig:
    d = hf.need("n_embd", int)
    positions = hf.need("n_positions", int)
    if hf.get("n_ctx", int, positions) != positions:
        raise ValueError(f"{hf.path}: n_ctx={hf.data['n_ctx']} differs from n_positions")
    return ModelConfig(
        arch="decoder_only",
        vocab_size=hf.need("vocab_size", int),
        d_model=d,
        n_heads=hf.need("n_head", int),
        d_ff=hf.get("n_inner", int, None) or 4 * d,
        n_layers=hf.need("n_layer", int),
        dropout=hf.get("resid_pdrop", float, 0.1),
        attn_dropout=hf.get("attn_pdrop", float, 0.1),
        activation=hf.activation("activation_function", "gelu_new"),
        positional="learned",
        max_len=positions,
        norm_first=True,
        norm_eps=hf.get("layer_norm_epsilon", float, 1e-5),
        scale_embeddings=False,
        tie_output=hf.get("tie_word_embeddings", bool, True),
    )


# -- Marian --------------------------------------------------------------------------------

MARIAN = Rules(
    mapped=words(
        "d_model encoder_attention_heads decoder_attention_heads encoder_ffn_dim "
        "decoder_ffn_dim encoder_layers decoder_layers num_hidden_layers dropout "
        "attention_dropout activation_function max_position_embeddings scale_embedding "
        "decoder_vocab_size share_encoder_decoder_embeddings bad_words_ids"
    ),
    harmless=words("activation_dropout encoder_layerdrop decoder_layerdrop classif_dropout"),
    fixed={
        "static_position_embeddings": (True,),
        "normalize_before": (False,),
        "normalize_embedding": (False,),
        "add_final_layer_norm": (False,),
        "add_bias_logits": (False,),
        "extra_pos_embeddings": (0, 2, None),  # unused by MarianMTModel
        "is_decoder": (False,),
        "tie_word_embeddings": (True,),
    },
)


def marian_config(hf: HFConfig) -> ModelConfig:
    for key in ("decoder_attention_heads", "decoder_ffn_dim"):
        twin = key.replace("decoder", "encoder")
        if hf.get(key, int, hf.need(twin, int)) != hf.need(twin, int):
            raise ValueError(f"{hf.path}: {key}={hf.data[key]} differs from {twin}; unsupported")
    vocab, pad = hf.need("vocab_size", int), hf.need("pad_token_id", int)
    if hf.get("decoder_vocab_size", int, vocab) != vocab:
        raise ValueError(f"{hf.path}: decoder_vocab_size differs from vocab_size; unsupported")
    if not hf.get("share_encoder_decoder_embeddings", bool, True):
        raise ValueError(f"{hf.path}: share_encoder_decoder_embeddings=false is unsupported")
    # aiayn's searches never emit <pad>, which is all Marian's configs ban
    if hf.get("bad_words_ids", list, []) not in ([], [[pad]]):
        raise ValueError(f"{hf.path}: bad_words_ids other than [[{pad}]] (<pad>) is unsupported")
    return ModelConfig(
        arch="encoder_decoder",
        vocab_size=vocab,
        d_model=hf.need("d_model", int),
        n_heads=hf.need("encoder_attention_heads", int),
        d_ff=hf.need("encoder_ffn_dim", int),
        n_layers=hf.need("encoder_layers", int),
        n_decoder_layers=hf.need("decoder_layers", int),
        dropout=hf.get("dropout", float, 0.1),
        attn_dropout=hf.get("attention_dropout", float, 0.0),
        activation=hf.activation("activation_function", "swish"),
        positional="sinusoidal_halves",
        max_len=hf.need("max_position_embeddings", int),
        norm_first=False,
        scale_embeddings=hf.get("scale_embedding", bool, False),
        pad_id=pad,
        output_bias=True,
    )


TRANSLATIONS: dict[str, tuple[Rules, Callable[[HFConfig], ModelConfig]]] = {
    "bert": (BERT, bert_config),
    "gpt2": (GPT2, gpt2_config),
    "marian": (MARIAN, marian_config),
}


def read_config(folder: Path) -> HFConfig:
    """The checked config.json of a Hugging Face model directory."""
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no config.json; not a Hugging Face model directory")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; not a model config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    if data.get("model_type") not in TRANSLATIONS:
        raise ValueError(
            f"{path}: model_type {data.get('model_type')!r} is not supported; "
            f"expected one of {', '.join(TRANSLATIONS)}"
        )
    hf = HFConfig(data, path)
    hf.check(TRANSLATIONS[data["model_type"]][0])
    return hf


def model_config(hf: HFConfig) -> ModelConfig:
    return TRANSLATIONS[hf.data["model_type"]][1](hf)

"""Hugging Face `config.json` files translated into aiayn's ModelConfig, trusting nothing.

Each format has an allow-list: keys it maps, keys that do not change what the model computes
(bookkeeping, training-only settings), and keys whose value must be the one aiayn represents
(BERT's absolute positions, GPT-2's attention scaled by sqrt(d_head) alone, Marian's post-norm
layers). Any other key or value is refused by name: a config aiayn cannot represent would
otherwise load and give silently different outputs. Missing keys and wrong types are errors
naming the file and key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiayn.families import FAMILIES
from aiayn.interop.hf_llama import LLAMA_FAMILY
from aiayn.interop.hf_rules import MAX_CONFIG_BYTES, HFConfig, Rules, short, words
from aiayn.models import ModelConfig
from aiayn.safeio import read_input_json

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
        arch=bert_family(hf),
        vocab_size=hf.need("vocab_size", int, 1),
        d_model=hf.need("hidden_size", int, 1),
        n_heads=hf.need("num_attention_heads", int, 1),
        d_ff=hf.need("intermediate_size", int, 1),
        n_layers=hf.need("num_hidden_layers", int, 1),
        dropout=hf.get("hidden_dropout_prob", float, 0.1),
        attn_dropout=hf.get("attention_probs_dropout_prob", float, 0.1),
        activation=hf.activation("hidden_act", "gelu"),
        positional="learned",
        max_len=hf.need("max_position_embeddings", int, 1),
        norm_first=False,
        norm_eps=hf.get("layer_norm_eps", float, 1e-12),
        scale_embeddings=False,
        embed_norm=True,
        n_segments=hf.get("type_vocab_size", int, 2),
        pad_id=hf.pad_id(),
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
    d = hf.need("n_embd", int, 1)
    positions = hf.need("n_positions", int, 1)
    if hf.get("n_ctx", int, positions) != positions:
        raise ValueError(f"{hf.path}: n_ctx={hf.data['n_ctx']} differs from n_positions")
    return ModelConfig(
        arch="decoder_only",
        vocab_size=hf.need("vocab_size", int, 1),
        d_model=d,
        n_heads=hf.need("n_head", int, 1),
        d_ff=hf.get("n_inner", int, None, 1) or 4 * d,
        n_layers=hf.need("n_layer", int, 1),
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
    hf.need("pad_token_id", int)  # Marian's configs all name it
    vocab, pad = hf.need("vocab_size", int, 1), hf.pad_id()
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
        d_model=hf.need("d_model", int, 1),
        n_heads=hf.need("encoder_attention_heads", int, 1),
        d_ff=hf.need("encoder_ffn_dim", int, 1),
        n_layers=hf.need("encoder_layers", int, 1),
        n_decoder_layers=hf.need("decoder_layers", int, 1),
        dropout=hf.get("dropout", float, 0.1),
        attn_dropout=hf.get("attention_dropout", float, 0.0),
        activation=hf.activation("activation_function", "swish"),
        positional="sinusoidal_halves",
        max_len=hf.need("max_position_embeddings", int, 1),
        norm_first=False,
        scale_embeddings=hf.get("scale_embedding", bool, False),
        pad_id=pad,
        output_bias=True,
    )


def bert_family(hf: HFConfig) -> str:
    """The family whose export class (aiayn.families) the config names as its architecture;
    else a classifier (a BertModel, a BertForSequenceClassification)."""
    classes = hf.get("architectures", list, [])
    found = [f.name for f in FAMILIES.values() if f.hf_format == "bert" and f.hf_class in classes]
    return found[0] if found else "encoder_classifier"


TRANSLATIONS: dict[str, tuple[Rules, Callable[[HFConfig], ModelConfig]]] = {
    "bert": (BERT, bert_config),
    "gpt2": (GPT2, gpt2_config),
    "marian": (MARIAN, marian_config),
    **LLAMA_FAMILY,
}


def read_config(folder: Path) -> HFConfig:
    """The checked config.json of a Hugging Face model directory (a regular file in it)."""
    path = folder / "config.json"
    if not path.exists() and not path.is_symlink():
        raise ValueError(f"{folder}: no config.json; not a Hugging Face model directory")
    data = read_input_json(path, MAX_CONFIG_BYTES, within=folder)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    kind = data.get("model_type")
    if not isinstance(kind, str) or kind not in TRANSLATIONS:
        raise ValueError(
            f"{path}: model_type {short(kind)} is not supported; "
            f"expected one of {', '.join(TRANSLATIONS)}"
        )
    hf = HFConfig(data, path)
    hf.check(TRANSLATIONS[data["model_type"]][0])
    return hf


def model_config(hf: HFConfig) -> ModelConfig:
    return TRANSLATIONS[hf.data["model_type"]][1](hf)

"""`aiayn export-hf`: a run directory written as a Hugging Face model directory.

The export is the import read backwards: the same naming plans (`aiayn.interop.hf`), each
aiayn tensor split into the checkpoint tensors it is joined from, transposed back where the
format stores (in, out). Each family goes to the first `transformers` class that computes what
it computes: an encoder-decoder to `MarianMTModel` (post-norm) or `PegasusForConditionalGeneration`
(pre-norm), either with sines-then-cosines positions (the paper's interleaved ones reordered,
aiayn.interop.hf_targets); a decoder-only model to `GPT2LMHeadModel` (pre-norm, learned
positions) or `LlamaForCausalLM` (RMSNorm, RoPE, gated feed-forward); a classifier to
`BertForSequenceClassification` (post-norm, learned positions, an embedding norm). A run
whose model no class can compute exactly is refused, naming for each class the field, its
value and what the class needs: never a silent approximation. Two parts the class always has
and a run may lack are written as zeros, which compute what the run computes: Marian's output
bias and BERT's segment (token type) embedding. The tokenizer, its config and the generation
config carry aiayn's framing and decoding (aiayn.interop.hf_framing). Only aiayn's own code
writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aiayn.decode.quantize import refuse_int8
from aiayn.families import family
from aiayn.interop import hf_targets
from aiayn.interop.hf import FORMATS, Plan, take
from aiayn.interop.hf_framing import (
    framed_tokenizer,
    generation_config,
    input_names,
    model_max_length,
)
from aiayn.interop.hf_rules import ACTIVATIONS
from aiayn.models import ModelConfig
from aiayn.run.atomic import atomic_write, atomic_write_text
from aiayn.run.config import read_run_config
from aiayn.run.files import TOKENIZER
from aiayn.run.folder import OutputFolder
from aiayn.run.weights import save_tensors
from aiayn.tasks import load_run, load_tokenizer

CLASS = {
    "marian": "MarianMTModel",
    "gpt2": "GPT2LMHeadModel",
    "bert": "BertForSequenceClassification",
    **hf_targets.CLASSES,
}
# aiayn's activation -> the name transformers gives it (the first of the import's names)
HF_ACTIVATION = {ours: theirs for theirs, ours in reversed(ACTIVATIONS.items())}


def needs(kind: str) -> dict[str, tuple[Callable[[ModelConfig], Any], tuple[Any, ...]]]:
    """What the target class computes: for each field, how to read it and the values allowed."""
    common = {
        "norm": (lambda m: m.norm, ("layernorm",)),
        "bias": (lambda m: m.bias, (True,)),
        "qkv_bias": (lambda m: m.bias if m.qkv_bias is None else m.qkv_bias, (True,)),
        "n_kv_heads": (lambda m: m.kv_heads, ("n_heads",)),
        "head_dim": (lambda m: m.d_head, ("d_model / n_heads",)),
        "activation": (lambda m: m.activation, tuple(HF_ACTIVATION)),
        "residual": (lambda m: m.residual, (True,)),
        "feedforward": (lambda m: m.feedforward, (True,)),
        "scale_scores": (lambda m: m.scale_scores, (True,)),
        "attn_window": (lambda m: m.attn_window, (None,)),
    }
    post_norm = {
        "norm_first": (lambda m: m.norm_first, (False,)),
        "final_norm": (lambda m: m.final_norm, (None, False)),
    }
    if kind in hf_targets.NEEDS:
        common = {k: v for k, v in common.items() if k not in hf_targets.FREE.get(kind, ())}
        return common | {
            field: (lambda m, field=field: getattr(m, field), allowed)
            for field, allowed in hf_targets.NEEDS[kind].items()
        }
    return (
        common
        | {
            "marian": {
                **post_norm,
                # the interleaved layout is written reordered (hf_targets.reorder_stream)
                "positional": (lambda m: m.positional, ("sinusoidal_halves", "sinusoidal")),
                "embed_norm": (lambda m: m.embed_norm, (False,)),
                "share_embeddings": (lambda m: m.share_embeddings, (True,)),
                "tie_output": (lambda m: m.tie_output, (True,)),
            },
            "gpt2": {
                "norm_first": (lambda m: m.norm_first, (True,)),
                "final_norm": (lambda m: m.final_norm, (None, True)),
                "positional": (lambda m: m.positional, ("learned",)),
                "scale_embeddings": (lambda m: m.scale_embeddings, (False,)),
                "embed_norm": (lambda m: m.embed_norm, (False,)),
            },
            "bert": {
                **post_norm,
                "positional": (lambda m: m.positional, ("learned",)),
                "scale_embeddings": (lambda m: m.scale_embeddings, (False,)),
                "embed_norm": (lambda m: m.embed_norm, (True,)),
                "pooling": (lambda m: m.pooling, ("cls",)),
            },
        }[kind]
    )


def hf_class(m: ModelConfig, kind: str) -> str:
    """The transformers class that computes `m` in the format `kind`: its family's own class
    (a tagger's BertForTokenClassification) for the family's format, else the format's."""
    own = family(m.arch)
    return own.hf_class if own.hf_class and kind == own.hf_format else CLASS[kind]


def unmet(m: ModelConfig, kind: str) -> str | None:
    """The first field of `m` that the class of `kind` cannot compute, said as a refusal."""
    fields = needs(kind)
    symbolic = {"n_heads": m.n_heads, "d_model / n_heads": m.d_model // m.n_heads}
    for field, (read, allowed) in fields.items():
        values = [symbolic.get(a, a) if isinstance(a, str) else a for a in allowed]
        if (value := read(m)) not in values:
            shown = [
                f"{v!r} ({a})" if a in symbolic else repr(v)
                for a, v in zip(allowed, values, strict=True)
            ]
            return f"model.{field}={value!r}: {hf_class(m, kind)} needs {' or '.join(shown)}"
    return None


def check_exportable(m: ModelConfig) -> str:
    """The Hugging Face format of `m`: the family's own, else the first alternative that
    computes it; or a ValueError naming, for each, the first field it cannot hold."""
    kind = family(m.arch).hf_format
    if kind is None:
        raise ValueError(f"model.arch={m.arch!r}: no Hugging Face class computes it")
    refusals = []
    for candidate in (kind, *hf_targets.ALTERNATIVES.get(kind, ())):
        if (why := unmet(m, candidate)) is None:
            return candidate
        refusals.append(why)
    raise ValueError(f"cannot be exported (arch {m.arch}): {'; '.join(refusals)}")


def hf_config(
    m: ModelConfig, kind: str, special: dict[str, int], labels: list[str] | None
) -> dict[str, Any]:
    """config.json of the class that computes `m`: the import's translation inverted."""
    act = HF_ACTIVATION.get(m.activation, m.activation)
    if kind in hf_targets.CLASSES:
        return hf_targets.hf_config(m, kind, special, act)
    base = {"architectures": [hf_class(m, kind)], "model_type": kind, "dtype": "float32"}
    if kind == "gpt2":
        return base | {
            "vocab_size": m.vocab_size, "n_embd": m.d_model, "n_head": m.n_heads,
            "n_inner": m.d_ff, "n_layer": m.n_layers, "n_positions": m.max_len,
            "activation_function": act, "resid_pdrop": m.dropout, "embd_pdrop": m.dropout,
            "attn_pdrop": m.attn_dropout, "layer_norm_epsilon": m.norm_eps,
            "tie_word_embeddings": m.tie_output, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "bos_token_id": special["bos"], "eos_token_id": special["eos"],
            "pad_token_id": special["pad"],
        }  # fmt: skip
    if kind == "bert":
        names = labels or [f"LABEL_{i}" for i in range(m.n_classes)]
        return base | {
            "vocab_size": m.vocab_size, "hidden_size": m.d_model,
            "num_attention_heads": m.n_heads, "intermediate_size": m.d_ff,
            "num_hidden_layers": m.n_layers, "hidden_act": act,
            "hidden_dropout_prob": m.dropout, "attention_probs_dropout_prob": m.attn_dropout,
            "max_position_embeddings": m.max_len, "layer_norm_eps": m.norm_eps,
            "type_vocab_size": max(m.n_segments, 2), "pad_token_id": m.pad_id,
            "position_embedding_type": "absolute",
            "id2label": {str(i): n for i, n in enumerate(names)},
            "label2id": {n: i for i, n in enumerate(names)},
        }  # fmt: skip
    return base | {
        "vocab_size": m.vocab_size, "decoder_vocab_size": m.vocab_size, "d_model": m.d_model,
        "encoder_layers": m.n_layers, "decoder_layers": m.decoder_layers,
        "encoder_attention_heads": m.n_heads, "decoder_attention_heads": m.n_heads,
        "encoder_ffn_dim": m.d_ff, "decoder_ffn_dim": m.d_ff, "activation_function": act,
        "dropout": m.dropout, "attention_dropout": m.attn_dropout,
        "max_position_embeddings": m.max_len, "scale_embedding": m.scale_embeddings,
        "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
        "pad_token_id": m.pad_id, "eos_token_id": special["eos"],
        "decoder_start_token_id": special["bos"], "forced_eos_token_id": None,
        "bad_words_ids": [[m.pad_id]],  # aiayn's searches never emit <pad>
    }  # fmt: skip


def row_sizes(name: str, m: ModelConfig, n_parts: int) -> list[int] | None:
    """The rows of each checkpoint tensor that the import joins into aiayn's tensor `name`:
    a fused query-key-value map's q holds n_heads heads and its k and v n_kv_heads each
    (grouped-query attention); None: equal blocks."""
    if ".qkv." in name and n_parts == 3:
        return [m.n_heads * m.d_head, m.kv_heads * m.d_head, m.kv_heads * m.d_head]
    return None


def split(
    value: Tensor,
    names: tuple[str, ...],
    transpose: bool,
    row: bool,
    sizes: list[int] | None = None,
) -> dict[str, Tensor]:
    """The checkpoint tensors that the import joins into `value` (row blocks of `sizes`, or
    equal ones)."""
    if len(names) == 1:
        parts: tuple[Tensor, ...] = (value,)
    else:
        parts = value.split(sizes, dim=0) if sizes else value.chunk(len(names), dim=0)
    out = {}
    for name, part in zip(names, parts, strict=True):
        part = part.t() if transpose else part
        out[name] = (part.unsqueeze(0) if row else part).contiguous()
    return out


def hf_tensors(model: nn.Module, plan: Plan, kind: str) -> dict[str, Tensor]:
    """The checkpoint of `model` under `plan`; a tensor tied in aiayn is stored once."""
    state = model.state_dict()
    m: ModelConfig = model.cfg
    if kind in ("marian", "pegasus") and "generator.bias" not in state:  # output_bias = false
        state["generator.bias"] = torch.zeros(m.vocab_size)
    if kind in ("marian", "pegasus") and m.positional == "sinusoidal":
        state = hf_targets.reorder_stream(state, m.d_model)
    if kind == "llama":
        state = hf_targets.scale_embedding(state, m)
    if kind == "bert":  # tools expect segments 0 and 1 (optimum's ONNX export); zeros add nothing
        segments = state.get("segment_embed.weight", torch.zeros(0, m.d_model))
        state["segment_embed.weight"] = torch.cat(
            [segments, torch.zeros(max(0, 2 - len(segments)), m.d_model)]
        )
    tensors: dict[str, Tensor] = {}
    for name, value in state.items():
        if name not in plan:
            raise ValueError(f"aiayn tensor {name} has no place in {CLASS[kind]}")
        t = plan[name]
        sizes = row_sizes(name, m, len(t.names))
        for hf_name, part in split(value.float(), t.names, t.transpose, t.row, sizes).items():
            if hf_name in tensors and not torch.equal(tensors[hf_name], part):
                raise ValueError(f"{hf_name} would hold two different aiayn tensors")
            tensors[hf_name] = part
    return tensors


def tokenizer_config(special: dict[str, str], kind: str) -> dict[str, Any]:
    """What `transformers` needs beside tokenizer.json to know the special tokens."""
    # Pegasus starts decoding from its padding, and so CTranslate2's converter starts a
    # Pegasus from the tokenizer's pad_token; aiayn starts from <s>, so this tokenizer pads
    # with <s> (a padded position is masked, whatever its id; config.json keeps <pad>)
    pad = special["bos"] if kind == "pegasus" else special["pad"]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": pad, "bos_token": special["bos"],
        "eos_token": special["eos"], "unk_token": special["unk"],
        "model_max_length": None,
        "padding_side": "left" if kind in ("gpt2", "llama") else "right",
        # "<pad>" written in a text is text to aiayn (aiayn.data.tokenizer): the same there
        "split_special_tokens": True,
    }  # fmt: skip


def export_plan(m: ModelConfig, kind: str) -> Plan:
    """Where each aiayn tensor goes in the checkpoint of `kind`: the import's plan, Marian's
    with Pegasus' final norms for Pegasus."""
    if kind == "pegasus":
        fmt = FORMATS["marian"]
        extra = hf_targets.pegasus_extra(m, fmt.prefix)
        return fmt.plan(m, fmt.prefix) | {ours: take(theirs) for ours, theirs in extra.items()}
    fmt = FORMATS[kind]
    return fmt.plan(hf_targets.unscaled(m) if kind == "llama" else m, fmt.prefix)


def export(
    run_dir: str | Path,
    out: str | Path,
    weights: str | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """`aiayn export-hf`: the run written by its family's exporter; the class it loads with."""
    arch = read_run_config(run_dir).model.arch
    chosen = {"weights": weights} if weights is not None else {}  # as other commands choose
    return family(arch).part("export_hf")(run_dir, out, log=log, **chosen)


def export_run(
    run_dir: str | Path,
    out: str | Path,
    log: Callable[[str], None] = print,
    weights: str | None = None,
) -> str:
    """Write the Hugging Face directory `out` (new or empty) of the run `run_dir` with its
    `weights` (pick_weights' choice by default); returns the class it loads with."""
    run_dir, out = Path(run_dir), Path(out)
    cfg = read_run_config(run_dir)
    refuse_int8(run_dir)
    kind = check_exportable(cfg.model)
    _, model = load_run(run_dir, cfg.model.arch, weights, log=log)
    tok = load_tokenizer(run_dir, TOKENIZER, cfg.model.vocab_size)
    ids = {"pad": tok.pad_id, "bos": tok.bos_id, "eos": tok.eos_id, "unk": tok.unk_id}
    names = {k: None if i is None else tok.tok.id_to_token(i) for k, i in ids.items()}
    labels = None
    if kind == "bert":
        from aiayn.tasks.classification import load_labels

        labels = load_labels(run_dir, cfg.model.n_classes)
    tensors = hf_tensors(model, export_plan(cfg.model, kind), kind)
    config = hf_config(cfg.model, kind, ids, labels)
    generation = generation_config(cfg, tok, kind)
    with OutputFolder(out, "export-hf"):
        save_tensors(tensors, out / "model.safetensors")
        atomic_write_text(out / "tokenizer.json", framed_tokenizer(tok, cfg, kind).to_str())
        lengths = {"model_max_length": model_max_length(cfg, kind)}
        for name, data in (
            ("config.json", config),
            (
                "tokenizer_config.json",
                tokenizer_config(names, kind) | lengths | {"model_input_names": input_names(kind)},
            ),
            *((("generation_config.json", generation),) if generation else ()),
        ):
            text = json.dumps(data, indent=2) + "\n"
            atomic_write(out / name, lambda t, text=text: t.write_text(text, encoding="utf-8"))
    log(f"exported {run_dir} ({cfg.model.arch}) as {hf_class(cfg.model, kind)} into {out}")
    return hf_class(cfg.model, kind)

"""Hugging Face checkpoints (BERT, GPT-2, Marian, Llama, Mistral, Qwen2) loaded into aiayn's
own modules.

Each format is a config translation and a naming plan: for every aiayn tensor, the checkpoint
tensors it is made of (concatenated along rows, so separate q/k/v become one fused projection)
and whether it is stored transposed (GPT-2's Conv1D). Every checkpoint tensor must be used,
and every aiayn tensor found, or loading fails naming the tensor.

The model is built on the meta device and takes the checkpoint's tensors in their own dtype
(bf16 stays bf16), read one at a time from the file: loading needs about the checkpoint's
size in memory, not a float32 copy beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from aiayn.config import TrainConfig
from aiayn.interop.hf_config import HFConfig, model_config, read_config
from aiayn.models import ModelConfig, build_model
from aiayn.models.build import materialise
from aiayn.run.paths import inside
from aiayn.run.weights import WEIGHT_DTYPES, WEIGHT_NAMES, SafetensorsFile, finite, load_plain
from aiayn.runtime.attention import use_attention


@dataclass(frozen=True)
class Take:
    """Checkpoint tensors concatenated along rows; transposed first when stored (in, out);
    flattened when a vector is stored as a (1, n) row (Marian's final_logits_bias)."""

    names: tuple[str, ...]
    transpose: bool = False
    row: bool = False


def take(*names: str, transpose: bool = False, row: bool = False) -> Take:
    return Take(names, transpose, row)


Plan = dict[str, Take]
# Buffers some checkpoints carry that hold no weights: causal masks and position ranges.
IGNORED_SUFFIXES = (
    ".attn.bias",
    ".attn.masked_bias",
    "embeddings.position_ids",
    ".rotary_emb.inv_freq",
)


def _linear(ours: str, theirs: str, transpose: bool = False) -> Plan:
    return {
        f"{ours}.weight": take(f"{theirs}.weight", transpose=transpose),
        f"{ours}.bias": take(f"{theirs}.bias"),
    }


def _fused(ours: str, theirs: list[str]) -> Plan:
    return {
        f"{ours}.weight": take(*(f"{t}.weight" for t in theirs)),
        f"{ours}.bias": take(*(f"{t}.bias" for t in theirs)),
    }


# -- BERT ----------------------------------------------------------------------------------


def bert_plan(cfg: ModelConfig, prefix: str) -> Plan:
    e = f"{prefix}embeddings"
    plan = {
        "embed.weight": take(f"{e}.word_embeddings.weight"),
        "segment_embed.weight": take(f"{e}.token_type_embeddings.weight"),
        "transformer.pos.table.weight": take(f"{e}.position_embeddings.weight"),
        "transformer.embed_norm.weight": take(f"{e}.LayerNorm.weight"),
        "transformer.embed_norm.bias": take(f"{e}.LayerNorm.bias"),
        **_linear("pooler", f"{prefix}pooler.dense"),
        **_linear("classifier", "classifier"),  # only BertForSequenceClassification has it
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"transformer.layers.{i}", f"{prefix}encoder.layer.{i}"
        a = f"{theirs}.attention"
        plan |= _fused(
            f"{ours}.self_attn.qkv", [f"{a}.self.{n}" for n in ("query", "key", "value")]
        )
        plan |= _linear(f"{ours}.self_attn.out", f"{a}.output.dense")
        plan |= _linear(f"{ours}.norm1", f"{a}.output.LayerNorm")
        plan |= _linear(f"{ours}.ffn.w_in", f"{theirs}.intermediate.dense")
        plan |= _linear(f"{ours}.ffn.w_out", f"{theirs}.output.dense")
        plan |= _linear(f"{ours}.norm2", f"{theirs}.output.LayerNorm")
    return plan


# -- GPT-2 ---------------------------------------------------------------------------------


def gpt2_plan(cfg: ModelConfig, prefix: str) -> Plan:
    plan = {
        "embed.weight": take(f"{prefix}wte.weight"),
        "transformer.pos.table.weight": take(f"{prefix}wpe.weight"),
        **_linear("transformer.norm", f"{prefix}ln_f"),
        "lm_head.weight": take(f"{prefix}wte.weight" if cfg.tie_output else "lm_head.weight"),
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"transformer.layers.{i}", f"{prefix}h.{i}"
        plan |= _linear(f"{ours}.norm1", f"{theirs}.ln_1")
        plan |= _linear(f"{ours}.self_attn.qkv", f"{theirs}.attn.c_attn", transpose=True)
        plan |= _linear(f"{ours}.self_attn.out", f"{theirs}.attn.c_proj", transpose=True)
        plan |= _linear(f"{ours}.norm2", f"{theirs}.ln_2")
        plan |= _linear(f"{ours}.ffn.w_in", f"{theirs}.mlp.c_fc", transpose=True)
        plan |= _linear(f"{ours}.ffn.w_out", f"{theirs}.mlp.c_proj", transpose=True)
    return plan


# -- Marian --------------------------------------------------------------------------------


def _marian_attention(ours: str, theirs: str, cross: bool) -> Plan:
    names = [f"{theirs}.{p}_proj" for p in "qkv"]
    plan = _linear(f"{ours}.out", f"{theirs}.out_proj")
    if cross:
        return plan | _linear(f"{ours}.q", names[0]) | _fused(f"{ours}.kv", names[1:])
    return plan | _fused(f"{ours}.qkv", names)


def marian_plan(cfg: ModelConfig, prefix: str) -> Plan:
    shared = take(f"{prefix}shared.weight")
    plan = {
        "src_embed.weight": shared,
        "tgt_embed.weight": shared,
        "generator.weight": shared,
        "generator.bias": take("final_logits_bias", row=True),
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"transformer.encoder.layers.{i}", f"{prefix}encoder.layers.{i}"
        plan |= _marian_attention(f"{ours}.self_attn", f"{theirs}.self_attn", cross=False)
        plan |= _linear(f"{ours}.norm1", f"{theirs}.self_attn_layer_norm")
        plan |= _linear(f"{ours}.ffn.w_in", f"{theirs}.fc1")
        plan |= _linear(f"{ours}.ffn.w_out", f"{theirs}.fc2")
        plan |= _linear(f"{ours}.norm2", f"{theirs}.final_layer_norm")
    for i in range(cfg.decoder_layers):
        ours, theirs = f"transformer.decoder.layers.{i}", f"{prefix}decoder.layers.{i}"
        plan |= _marian_attention(f"{ours}.self_attn", f"{theirs}.self_attn", cross=False)
        plan |= _linear(f"{ours}.norm1", f"{theirs}.self_attn_layer_norm")
        plan |= _marian_attention(f"{ours}.cross_attn", f"{theirs}.encoder_attn", cross=True)
        plan |= _linear(f"{ours}.norm2", f"{theirs}.encoder_attn_layer_norm")
        plan |= _linear(f"{ours}.ffn.w_in", f"{theirs}.fc1")
        plan |= _linear(f"{ours}.ffn.w_out", f"{theirs}.fc2")
        plan |= _linear(f"{ours}.norm3", f"{theirs}.final_layer_norm")
    return plan


# -- Llama, Mistral, Qwen2 --------------------------------------------------------------------


def llama_plan(cfg: ModelConfig, prefix: str) -> Plan:
    embed = f"{prefix}embed_tokens.weight"
    plan = {
        "embed.weight": take(embed),
        "transformer.norm.weight": take(f"{prefix}norm.weight"),
        "lm_head.weight": take(embed if cfg.tie_output else "lm_head.weight"),
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"transformer.layers.{i}", f"{prefix}layers.{i}"
        qkv = [f"{theirs}.self_attn.{p}_proj" for p in "qkv"]
        plan |= _fused(f"{ours}.self_attn.qkv", qkv)  # Qwen2's biases; none elsewhere
        plan[f"{ours}.self_attn.out.weight"] = take(f"{theirs}.self_attn.o_proj.weight")
        plan[f"{ours}.norm1.weight"] = take(f"{theirs}.input_layernorm.weight")
        plan[f"{ours}.norm2.weight"] = take(f"{theirs}.post_attention_layernorm.weight")
        mlp = f"{theirs}.mlp"
        plan[f"{ours}.ffn.w_in.weight"] = take(f"{mlp}.gate_proj.weight", f"{mlp}.up_proj.weight")
        plan[f"{ours}.ffn.w_out.weight"] = take(f"{mlp}.down_proj.weight")
    return plan


@dataclass(frozen=True)
class Format:
    plan: Callable[[ModelConfig, str], Plan]
    prefix: str  # the checkpoint's name prefix when saved with a task head
    optional: tuple[str, ...] = ()  # aiayn tensors that may be missing (new task heads)
    aliases: tuple[str, ...] = ()  # tied copies a checkpoint may also store


FORMATS = {
    "bert": Format(
        bert_plan,
        "bert.",
        optional=("classifier.weight", "classifier.bias", "pooler.weight", "pooler.bias"),
    ),
    "gpt2": Format(gpt2_plan, "transformer.", aliases=("lm_head.weight",)),
    "marian": Format(
        marian_plan,
        "model.",
        aliases=(
            "lm_head.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
            "model.encoder.embed_positions.weight",
            "model.decoder.embed_positions.weight",
        ),
    ),
    **{
        kind: Format(llama_plan, "model.", aliases=("lm_head.weight",))
        for kind in ("llama", "mistral", "qwen2")
    },
}


def read_checkpoint(folder: Path) -> Mapping[str, Tensor]:
    """The tensors of `model.safetensors` (read lazily), or of `pytorch_model.bin` read
    without pickle code; neither may be a link out of `folder`."""
    if (path := inside(folder, "model.safetensors")).exists():
        return SafetensorsFile(path)
    if (path := inside(folder, "pytorch_model.bin")).exists():
        tensors = load_plain(path, "checkpoint")
        if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in tensors.items()
        ):
            raise ValueError(f"{path}: not a table of named tensors")
        return tensors
    raise ValueError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _joined(take_: Take, tensors: Mapping[str, Tensor]) -> Tensor:
    parts = [tensors[n].t() if take_.transpose else tensors[n] for n in take_.names]
    value = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
    if take_.row and value.dim() == 2 and value.size(0) == 1:
        value = value[0]
    return value


def assemble(
    model: nn.Module, plan: Plan, tensors: Mapping[str, Tensor], fmt: Format
) -> dict[str, Tensor]:
    """aiayn's state dict from the checkpoint's tensors, with every mismatch an error. All take
    the dtype of the first (the token embedding's); a tensor read twice (tied) is one tensor."""
    state, used, dtype, read = {}, set(), None, {}
    for name, param in model.state_dict().items():
        if name not in plan:
            if name in fmt.optional:
                continue
            raise ValueError(f"aiayn tensor {name} has no source in the checkpoint plan")
        missing = [n for n in plan[name].names if n not in tensors]
        if missing:
            if name in fmt.optional:
                continue
            raise ValueError(f"checkpoint tensor {missing[0]} is missing (needed for {name})")
        if plan[name] in read:
            state[name] = read[plan[name]]
            continue
        value = _joined(plan[name], tensors)
        if value.shape != param.shape:
            raise ValueError(
                f"checkpoint tensor {', '.join(plan[name].names)} has shape "
                f"{tuple(value.shape)}; {name} needs {tuple(param.shape)}"
            )
        if value.dtype not in WEIGHT_DTYPES:
            raise ValueError(
                f"checkpoint tensor {', '.join(plan[name].names)} is {value.dtype}; "
                f"expected {WEIGHT_NAMES}"
            )
        if not finite(value):
            raise ValueError(
                f"checkpoint tensor {', '.join(plan[name].names)} has "
                f"{int((~torch.isfinite(value.double())).sum()):,} non-finite values; "
                "expected finite floating-point weights"
            )
        dtype = dtype or value.dtype
        state[name] = read[plan[name]] = value.to(dtype).contiguous()
        used.update(plan[name].names)
    extra = [
        n
        for n in tensors
        if n not in used and n not in fmt.aliases and not n.endswith(IGNORED_SUFFIXES)
    ]
    if extra:
        raise ValueError(f"checkpoint tensor {sorted(extra)[0]} is unexpected; nothing uses it")
    return state


def from_pretrained(path: str | Path) -> nn.Module:
    """The aiayn model of a Hugging Face directory (config.json and weights), in eval mode."""
    folder = Path(path)
    model = load_pretrained(folder, read_config(folder))
    # no run config to name the attention path: a run's default (train.attn_impl)
    use_attention(model, TrainConfig.attn_impl)
    return model


def load_pretrained(folder: Path, hf: HFConfig) -> nn.Module:
    """The aiayn model of `folder`'s weights, whose config.json `hf` has been read."""
    fmt = FORMATS[hf.data["model_type"]]
    cfg = model_config(hf)
    tensors = read_checkpoint(folder)
    prefix = fmt.prefix if any(n.startswith(fmt.prefix) for n in tensors) else ""
    model = build_model(cfg, "meta")
    materialise(model, assemble(model, fmt.plan(cfg, prefix), tensors, fmt))
    return model.eval()

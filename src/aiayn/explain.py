"""`aiayn explain`: one sentence's trip through an encoder-decoder, sub-layer by sub-layer.

For each sub-layer (self-attention, cross-attention, feed-forward) of each layer: the shapes
that go in and come out, the mask its attention obeys, the entropy of each head's attention
(in nats, averaged over the queries: 0 when every query looks at one key, log(T_k) when it
spreads evenly), and how large its update is against the residual stream it is added to
(||update|| / ||stream||, both over the whole sentence).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.nn.attention import record_attention
from aiayn.nn.layers import DecoderLayer, EncoderLayer
from aiayn.nn.masks import CAUSAL

if TYPE_CHECKING:
    from aiayn.decode.translate import Translator


@dataclass
class SubLayer:
    name: str  # e.g. "encoder.0.self_attn"
    shape_in: list[int]
    shape_out: list[int]
    update_ratio: float  # ||update|| / ||residual stream||
    mask: str | None = None
    entropy: list[float] | None = None  # per head, nats


@dataclass
class Trip:
    source: list[str]
    target: list[str]  # the decoder's input: <s> then the output tokens
    embedding: dict[str, object]
    sublayers: list[SubLayer] = field(default_factory=list)
    logits: list[int] = field(default_factory=list)


def head_entropy(weights: Tensor) -> list[float]:
    """Each head's attention entropy, averaged over queries, for the first row of a batch."""
    # weights: (B, H, T_q, T_k)
    w = weights[0].double()
    per_query = -(w * w.clamp_min(1e-300).log()).sum(-1)  # 0 log 0 = 0: masked keys add nothing
    return per_query.mean(-1).tolist()


def describe_mask(mask: object, t_q: int, t_k: int) -> str:
    if mask is None:
        return f"none: each of {t_q} queries sees all {t_k} keys"
    if mask is CAUSAL:
        return f"causal: query t sees keys 0..t of {t_k}"
    if isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.shape[-2] == 1:
        hidden = int((~mask[0]).sum())
        return f"padding: {hidden} of {t_k} keys hidden from all {t_q} queries"
    if isinstance(mask, Tensor) and mask.dtype == torch.bool:
        blocked = int((~mask).sum())
        return f"boolean {list(mask.shape)}: {blocked} of {mask.numel()} query-key pairs hidden"
    return f"additive bias {list(mask.shape)}"


@contextmanager
def traced(model: EncoderDecoder) -> Iterator[tuple[list[SubLayer], dict[str, Tensor]]]:
    """Within the block, each forward adds its sub-layers to the list (and attention weights
    to the dict, by module name)."""
    names = {
        m: n.removeprefix("transformer.").replace("layers.", "") for n, m in model.named_modules()
    }
    steps: list[SubLayer] = []
    masks: dict[str, str] = {}
    layers = [m for m in model.modules() if isinstance(m, EncoderLayer | DecoderLayer)]
    handles = [m.register_forward_pre_hook(record_masks(masks, names)) for m in layers]
    originals = {m: m.residual for m in layers}
    for layer in layers:
        layer.residual = recording(layer.residual, steps, names, masks)
    try:
        with record_attention(model) as weights:
            yield steps, weights
    finally:
        for layer, residual in originals.items():
            layer.residual = residual
        for h in handles:
            h.remove()


def record_masks(masks: dict[str, str], names: dict[nn.Module, str]):
    def hook(layer: nn.Module, args: tuple) -> None:
        x, prefix = args[0], names[layer]
        if isinstance(layer, DecoderLayer):
            memory, self_mask, memory_mask = args[1], args[2], args[3]
            masks[f"{prefix}.self_attn"] = describe_mask(self_mask, x.size(1), x.size(1))
            t_k = memory.size(1)
            masks[f"{prefix}.cross_attn"] = describe_mask(memory_mask, x.size(1), t_k)
        else:
            masks[f"{prefix}.self_attn"] = describe_mask(args[1], x.size(1), x.size(1))

    return hook


def recording(residual, steps: list[SubLayer], names: dict[nn.Module, str], masks: dict):
    """`residual` (how a sub-layer joins the stream), noting the sub-layer's shapes and the
    size of its update against the stream."""

    def joined(x: Tensor, sublayer, norm: nn.Module, drop: nn.Module) -> Tensor:
        seen: dict[str, Tensor] = {}

        def watched(h: Tensor) -> Tensor:
            seen["in"], seen["out"] = h, sublayer(h)
            return seen["out"]

        out = residual(x, watched, norm, drop)
        name = names[getattr(sublayer, "func", sublayer)]
        ratio = float(seen["out"].float().norm() / x.float().norm().clamp_min(1e-12))
        steps.append(
            SubLayer(name, list(seen["in"].shape), list(seen["out"].shape), ratio, masks.get(name))
        )
        return out

    return joined


@torch.no_grad()
def explain(model: EncoderDecoder, src: Tensor, tgt_in: Tensor, src_labels, tgt_labels) -> Trip:
    """The trip of one source (1, S) and decoder input (1, T) through `model`."""
    model.eval()
    cfg = model.cfg
    scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
    trip = Trip(
        src_labels,
        tgt_labels,
        {
            "source": [*src.shape, cfg.d_model],
            "target": [*tgt_in.shape, cfg.d_model],
            "scale": scale,
            "positional": cfg.positional,
        },
    )
    with traced(model) as (steps, weights):
        logits = model(src, tgt_in)
    for step in steps:
        key = f"transformer.{step.name.replace('.', '.layers.', 1)}"
        if key in weights:
            step.entropy = head_entropy(weights[key])
    trip.sublayers, trip.logits = steps, list(logits.shape)
    return trip


def render(trip: Trip) -> str:
    """The trip as text, one line per sub-layer."""
    e = trip.embedding
    lines = [
        f"source: {len(trip.source)} tokens  {' '.join(trip.source)}",
        f"decoder input: {len(trip.target)} tokens  {' '.join(trip.target)}",
        f"embeddings: source ids -> {tuple(e['source'])}, target ids -> {tuple(e['target'])}; "
        f"scaled by {e['scale']:.2f}, positions: {e['positional']}",
        "",
        f"{'sub-layer':<22}{'in':<16}{'out':<16}{'update/stream':>14}  attention entropy"
        " per head (nats)",
    ]
    for s in trip.sublayers:
        heads = "" if s.entropy is None else " ".join(f"{h:.2f}" for h in s.entropy)
        shapes = f"{fmt(s.shape_in):<16}{fmt(s.shape_out):<16}"
        lines.append(f"{s.name:<22}{shapes}{s.update_ratio:>14.3f}  {heads}")
        if s.mask:
            lines.append(f"{'':<22}mask: {s.mask}")
    lines.append(
        f"\nlogits: {fmt(trip.logits)} (one distribution over the vocabulary per position)"
    )
    return "\n".join(lines)


def fmt(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def random_translator(config: str, log: Callable[[str], None]) -> Translator:
    """A translator of `config`'s model with random weights, and tokenizers learnt from its
    training files."""
    from aiayn.config import RunConfig
    from aiayn.data.text import read_lines
    from aiayn.decode.translate import Translator
    from aiayn.runtime.attention import use_attention
    from aiayn.tasks.translation import fit_tokenizers

    cfg = RunConfig.load(config)
    if cfg.model.arch != "encoder_decoder":
        raise ValueError(f"{config}: explain follows a translation; this is {cfg.model.arch}")
    log(f"learning {cfg.data.tokenizer} tokenizers from {cfg.data.train_src} and its pair")
    src_tok, tgt_tok = fit_tokenizers(
        cfg, read_lines(cfg.data.train_src), read_lines(cfg.data.train_tgt)
    )
    # the vocabulary sizes training would give the model
    joint = src_tok is tgt_tok
    changes = {"vocab_size": tgt_tok.vocab_size, "pad_id": tgt_tok.pad_id}
    cfg = cfg.replace("model", src_vocab_size=None if joint else src_tok.vocab_size, **changes)
    model = EncoderDecoder(cfg.model)
    # the config's attention path, as a run of it would decode (`aiayn.tasks.load_run`)
    use_attention(model, cfg.train.attn_impl)
    return Translator(model, src_tok, tgt_tok, cfg.decode, cfg.model.max_len)

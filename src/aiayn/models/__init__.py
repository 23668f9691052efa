"""The model of a `ModelConfig`, built as its family (aiayn.families) says, and its size."""

from __future__ import annotations

import os

import torch
from torch import nn

from aiayn.families import family
from aiayn.models.config import ModelConfig

# Bounds for a model built without memory ("meta", to count parameters): beyond them a config
# is a mistake, and building millions of modules would take hours.
META_MAX_PARAMETERS, META_MAX_LAYERS = 10**13, 10_000


def estimate_parameters(cfg: ModelConfig) -> int:
    """An upper bound on the parameters `cfg` has (close for real sizes), without building it."""
    d, ff = cfg.d_model, cfg.d_ff * (3 if cfg.activation in ("swiglu", "geglu") else 2)
    # the query and output maps are n_heads wide, the key and value maps n_kv_heads, each
    # head d_head: a set head_dim (or grouped-query attention) is not d_model / n_heads
    width = (2 * cfg.n_heads + 2 * cfg.kv_heads) * cfg.d_head
    attn = width * (d + 1) + d
    layer = attn + ff * d + 10 * d + cfg.d_ff
    decoder = cfg.decoder_layers * (layer + attn) if cfg.arch == "encoder_decoder" else 0
    vocabs = cfg.vocab_size * (1 if cfg.tie_output else 2)
    if cfg.arch == "encoder_decoder" and not cfg.share_embeddings:
        vocabs += cfg.source_vocab
    tables = (vocabs + cfg.max_len + cfg.n_segments) * d
    return cfg.n_layers * layer + decoder + tables + cfg.n_classes * d + d * d


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_size(cfg: ModelConfig, device: torch.device) -> None:
    """Refuse a config too large to build here, naming its size, before anything is built."""
    n = estimate_parameters(cfg)
    layers = cfg.n_layers + (cfg.decoder_layers if cfg.arch == "encoder_decoder" else 0)
    if device.type == "meta":
        if n > META_MAX_PARAMETERS or layers > META_MAX_LAYERS:
            raise ValueError(
                f"the model would have about {n:.3g} parameters in {layers:,} layers, beyond "
                f"{META_MAX_PARAMETERS:.0e} parameters or {META_MAX_LAYERS:,} layers"
            )
        return
    memory = memory_bytes()
    if 4 * n > memory:  # float32 weights alone, before gradients or activations
        raise ValueError(
            f"the model would have about {n:.3g} parameters ({4 * n / 2**30:,.1f} GiB in "
            f"float32), more than this machine's {memory / 2**30:,.1f} GiB of memory"
        )


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> nn.Module:
    """The model of `cfg.arch`; device "meta" builds it without allocating weights."""
    device = torch.device(device or "cpu")
    check_size(cfg, device)
    with device:
        return family(cfg.arch).part("model")(cfg)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters: a matrix shared between embeddings and output counts once."""
    return sum(p.numel() for p in model.parameters())


def parameter_breakdown(model: nn.Module) -> list[tuple[str, int]]:
    """(top-level part, parameters it adds) with shared matrices counted at first sight."""
    seen: set[int] = set()
    rows = []
    for name, child in model.named_children():
        fresh = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if fresh:
            rows.append((name, sum(p.numel() for p in fresh)))
    return rows


__all__ = [
    "ModelConfig",
    "build_model",
    "count_parameters",
    "parameter_breakdown",
]

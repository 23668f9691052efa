"""The three model families, built from one `ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from aiayn.models.config import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.models.encoder_only import EncoderClassifier

MODELS: dict[str, type[nn.Module]] = {
    "encoder_decoder": EncoderDecoder,
    "decoder_only": DecoderOnlyLM,
    "encoder_classifier": EncoderClassifier,
}


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> nn.Module:
    """The model of `cfg.arch`; device "meta" builds it without allocating weights."""
    with torch.device(device or "cpu"):
        return MODELS[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters: a matrix shared between embeddings and output counts once."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODELS",
    "DecoderOnlyLM",
    "EncoderClassifier",
    "EncoderDecoder",
    "ModelConfig",
    "build_model",
    "count_parameters",
]

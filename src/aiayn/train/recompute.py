"""Activation checkpointing: each encoder and decoder layer keeps only its input during the
forward pass and recomputes its activations in the backward pass (about a third more compute,
far less memory). Applied from outside the model; names and weights are unchanged."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Recomputed:
    """A layer's forward that is checkpointed whenever gradients are being recorded."""

    def __init__(self, forward: Callable) -> None:
        self.forward = forward

    def __call__(self, *args: object) -> object:
        if not torch.is_grad_enabled():  # decoding and validation keep nothing anyway
            return self.forward(*args)
        # the dropout masks of the recomputation equal the first pass's (RNG state replayed)
        return checkpoint(self.forward, *args, use_reentrant=False)


def recompute_layers(model: nn.Module) -> int:
    """Checkpoint every layer of every stack in `model`; returns how many layers."""
    count = 0
    for stack in model.modules():
        if isinstance(stack, nn.ModuleList):
            for layer in stack:
                layer.forward = Recomputed(layer.forward)
                count += 1
    return count

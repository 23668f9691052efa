"""The output layer and the loss computed over slices of the positions (`train.loss_chunk`), so
that the whole (positions x vocabulary) float32 logits never exist at once: at GPT-2's 50,257
tokens, a batch of 16 x 1,024 positions has 3.3 GB of them, more than its activations.

The model's output layer is deferred for the time of the forward pass (its forward returns its
input, the last hidden states), and each slice of those states goes through the layer and the
label-smoothed loss under activation checkpointing: the forward pass keeps only the slice's
states, and the backward pass recomputes that slice's logits, takes their gradient and lets
them go before the next slice. The sums equal the loss over the whole logits (tests hold them
to F.cross_entropy); the output layer's weight is read outside the model's forward, which is
why sharded training (FSDP) refuses this setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from aiayn.train.loss import label_smoothed_loss, smoothed_sums


def _unchanged(h: Tensor) -> Tensor:
    return h


@contextmanager
def deferred(head: nn.Linear) -> Iterator[None]:
    """Within the block, `head` returns its input: the model's forward ends before it."""
    head.forward = _unchanged
    try:
        yield
    finally:
        del head.forward  # the class's forward again


def _slice_sums(
    h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, keep: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    # h: (rows, d_model), weight: (V, d_model), target and keep: (rows,) -> two scalars
    return smoothed_sums(F.linear(h, weight, bias), target, keep, eps)


def chunked_loss(
    h: Tensor, head: nn.Linear, target: Tensor, eps: float, pad_id: int, rows: int
) -> tuple[Tensor, Tensor]:
    """label_smoothed_loss(head(h), target, eps, pad_id), `rows` positions at a time."""
    # h: (B, T, d_model), target: (B, T) -> two scalars
    h, target = h.reshape(-1, h.size(-1)), target.reshape(-1)
    keep = target != pad_id
    loss = nll = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
    for s in range(0, len(h), rows):
        part = slice(s, s + rows)
        # no random draw inside a slice: there is no generator state to replay
        slice_loss, slice_nll = checkpoint(
            _slice_sums,
            *(h[part], head.weight, head.bias, target[part], keep[part], eps),
            use_reentrant=False,
            preserve_rng_state=False,
        )
        loss, nll = loss + slice_loss, nll + slice_nll
    return loss, nll


def output_loss(
    forward: Callable[[], Tensor],
    head: nn.Linear,
    target: Tensor,
    eps: float,
    pad_id: int,
    rows: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(summed smoothed loss, summed NLL, logits) of the model's `forward`, whose last layer is
    `head`: over the whole logits when `rows` is 0, else `rows` positions at a time, and then
    no logits are returned."""
    if not rows:
        logits = forward()
        return *label_smoothed_loss(logits, target, eps, pad_id), logits
    with deferred(head):
        h = forward()
    return *chunked_loss(h, head, target, eps, pad_id, rows), None

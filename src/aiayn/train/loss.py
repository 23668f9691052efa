"""Label-smoothed cross-entropy (paper §5.4, Szegedy et al. 2016), padding ignored.

The smoothed target puts 1 - eps on the true token and spreads eps evenly over the vocabulary:
loss = (1 - eps) * NLL + eps * mean over the vocabulary of -log p. Its gradient is softmax(z)
minus the smoothed target: written as one autograd function, the backward pass makes one
(B, T, V) tensor instead of three (the loss is a quarter of a small translation model's step).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SmoothedCrossEntropy(torch.autograd.Function):
    """(summed smoothed loss, summed NLL) of rows `keep`; logits (N, V), target and keep (N,)."""

    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, keep: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        logp = torch.log_softmax(logits, dim=-1)  # (N, V)
        nll = -logp.gather(-1, target[:, None]).squeeze(-1) * keep
        uniform = -logp.mean(dim=-1) * keep  # mean over the vocabulary of -log p
        ctx.save_for_backward(logp, target, keep)
        ctx.eps = eps
        return ((1.0 - eps) * nll + eps * uniform).sum(), nll.sum()

    @staticmethod
    def backward(ctx, g_loss: Tensor, g_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logp, target, keep = ctx.saved_tensors
        eps, keep = ctx.eps, keep.to(logp.dtype)[:, None]  # (N, 1)
        # d loss / dz = softmax - (1 - eps) onehot - eps / V;  d nll / dz = softmax - onehot.
        # exp is slow on CPUs where its result is subnormal; probabilities below e^-80 (1e-35)
        # are raised to it, a change far below float32's resolution of the other terms.
        grad = logp.clamp(min=-80.0).exp_().mul_(keep * (g_loss + g_nll))
        grad.sub_(keep * (g_loss * eps / logp.size(-1)))
        grad.scatter_add_(-1, target[:, None], -keep * (g_loss * (1.0 - eps) + g_nll))
        return grad, None, None, None


def label_smoothed_loss(
    logits: Tensor, target: Tensor, epsilon: float, pad_id: int
) -> tuple[Tensor, Tensor]:
    """Summed smoothed loss and summed NLL over non-padding targets (in float32 or wider)."""
    # logits: (B, T, V), target: (B, T) -> two scalars
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    flat = logits.reshape(-1, logits.size(-1))
    target = target.reshape(-1)
    return _SmoothedCrossEntropy.apply(flat, target, target != pad_id, epsilon)

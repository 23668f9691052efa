"""Label-smoothed cross-entropy (paper §5.4, Szegedy et al. 2016), padding ignored."""

from __future__ import annotations

from torch import Tensor


def label_smoothed_loss(
    logits: Tensor, target: Tensor, epsilon: float, pad_id: int
) -> tuple[Tensor, Tensor]:
    """Summed smoothed loss and summed NLL over non-padding targets.

    The smoothed target puts 1 - epsilon on the true token and spreads epsilon evenly over the
    vocabulary: loss = (1 - eps) * NLL + eps * mean over tokens of -log p.
    """
    # logits: (B, T, V), target: (B, T) -> two scalars
    logp = logits.float().log_softmax(dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
    smooth = -logp.mean(dim=-1)  # (B, T)
    keep = target != pad_id
    nll = nll[keep].sum()
    return (1.0 - epsilon) * nll + epsilon * smooth[keep].sum(), nll

"""Normalisations: the paper's LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * gain + bias, over the last dimension."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        # x: (..., d_model)
        centred = x - x.mean(-1, keepdim=True)
        var = centred.square().mean(-1, keepdim=True)  # biased, as in the definition
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight if self.bias is None else torch.addcmul(self.bias, y, self.weight)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * gain: LayerNorm without re-centring."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        # x: (..., d_model)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


NORMS: dict[str, Callable[[int, float, bool], nn.Module]] = {
    "layernorm": LayerNorm,
    "rmsnorm": lambda d_model, eps, bias: RMSNorm(d_model, eps),
}


def norm_factory(
    name: str, d_model: int, eps: float = 1e-5, bias: bool = True
) -> Callable[[], nn.Module]:
    """A zero-argument maker of fresh norm layers, one per residual connection."""
    if name not in NORMS:
        raise ValueError(f"norm={name!r} is unknown; expected one of {sorted(NORMS)}")
    return lambda: NORMS[name](d_model, eps, bias)

"""The position-wise feed-forward network (paper §3.3): FFN(x) = act(x W1 + b1) W2 + b2.

ReLU is the paper's; GELU and SiLU are later choices; SwiGLU and GeGLU are the gated variants
(Shazeer 2020), FFN(x) = (act(x W) * x V) W2.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
}
GATED = {"swiglu": "silu", "geglu": "gelu"}


class FeedForward(nn.Module):
    """Two linear maps with an activation between them, applied at each position alike."""

    def __init__(
        self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True
    ) -> None:
        super().__init__()
        self.w_in = nn.Linear(d_model, d_ff, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.w_out = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model)
        return self.w_out(self.act(self.w_in(x)))


class GatedFeedForward(nn.Module):
    """A gated linear unit: the gate and the value come from one fused projection."""

    def __init__(
        self, d_model: int, d_ff: int, activation: str = "silu", bias: bool = True
    ) -> None:
        super().__init__()
        self.w_in = nn.Linear(d_model, 2 * d_ff, bias=bias)  # [gate W; value V]
        self.act = ACTIVATIONS[activation]
        self.w_out = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, T, d_model) -> (B, T, d_model)
        gate, value = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(self.act(gate) * value)


FEEDFORWARD_NAMES = (*ACTIVATIONS, *GATED)


def feed_forward(name: str, d_model: int, d_ff: int, bias: bool = True) -> nn.Module:
    """Build the feed-forward net for an activation name from FEEDFORWARD_NAMES."""
    if name in GATED:
        return GatedFeedForward(d_model, d_ff, GATED[name], bias)
    if name in ACTIVATIONS:
        return FeedForward(d_model, d_ff, name, bias)
    raise ValueError(f"activation={name!r} is unknown; expected one of {sorted(FEEDFORWARD_NAMES)}")

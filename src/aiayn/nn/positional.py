"""Positional encodings: the paper's sinusoidal (§3.5) and learned ones, plus RoPE and ALiBi.

Each is a `PositionalEncoding` acting at one of three hooks, the others left as no-ops:
`embed` adds to token embeddings (sinusoidal, learned), `rotation` gives the angles that rotate
queries and keys (RoPE), `score_bias` adds to attention scores (ALiBi). Positions are integer
tensors, (T,) shared by the batch or (B, T) per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Rotation = tuple[Tensor, Tensor]  # (cos, sin), each broadcastable to (B, H, T, d_head)


class PositionalEncoding(nn.Module):
    """No position information at all; the base of the encodings below."""

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        return x  # (B, T, d_model)

    def rotation(self, positions: Tensor) -> Rotation | None:
        return None

    def score_bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor | None:
        return None


def sinusoid_table(positions: Tensor, d_model: int, halves: bool = False) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same): (..., T, d_model).

    With `halves`, the same values laid out as all sines then all cosines (Marian's layout).
    """
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, device=positions.device) / d_model)
    angles = positions[..., None].to(inv_freq.dtype) * inv_freq  # (..., T, d_model / 2)
    if halves:
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class Sinusoidal(PositionalEncoding):
    """The paper's fixed encoding (§3.5), computed for any position, so no maximum length."""

    def __init__(self, d_model: int, halves: bool = False) -> None:
        super().__init__()
        self.d_model, self.halves = d_model, halves

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        # x: (B, T, d_model)
        return x + sinusoid_table(positions, self.d_model, self.halves).to(x.dtype)


class Learned(PositionalEncoding):
    """A trained vector per position (the paper's alternative, Table 3 row E), up to max_len."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        # x: (B, T, d_model). The check reads the largest position back to the host, which
        # neither a compiled graph can do without a break nor a CUDA graph's capture at all:
        # a compiled training step's positions are 0 ... T-1, and its task checks T against
        # max_len; a captured decoder step's stay below a capacity checked when it was set.
        capturing = positions.is_cuda and torch.cuda.is_current_stream_capturing()
        if torch.compiler.is_compiling() or capturing:
            return x + self.table(positions)
        if positions.numel() and int(positions.max()) >= self.table.num_embeddings:
            raise ValueError(
                f"position {int(positions.max())} is beyond the learned encoding's "
                f"max_len={self.table.num_embeddings}"
            )
        return x + self.table(positions)


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3's stretch of RoPE's long wavelengths (factor 1: none): wavelengths beyond
    original_max_len / low_freq_factor are `factor` times longer, those below
    original_max_len / high_freq_factor unchanged, and those between interpolated."""

    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192


def rope_frequencies(d_head: int, base: float, scaling: RopeScaling = RopeScaling()) -> Tensor:
    """theta_i = base^(-2i / d_head) for i < d_head / 2, with Llama 3's scaling: (d_head / 2,)."""
    # 1 / base^x rather than base^-x: the rounding of Hugging Face's Llama, so that greedy
    # decoding of imported models picks the same tokens
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2, dtype=torch.float) / d_head)
    if scaling.factor == 1.0:
        return inv_freq
    s = scaling
    wavelen = 2 * math.pi / inv_freq
    longest, shortest = (
        s.original_max_len / s.low_freq_factor,
        s.original_max_len / s.high_freq_factor,
    )
    stretched = torch.where(wavelen > longest, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_len / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    between = (wavelen >= shortest) & (wavelen <= longest)
    blended = (1 - smooth) * stretched / s.factor + smooth * stretched
    return torch.where(between, blended, stretched)


class Rotary(PositionalEncoding):
    """RoPE (Su et al. 2021): rotate each (i, i + d/2) pair of q and k by angle pos * theta_i."""

    def __init__(
        self, d_head: int, base: float = 10000.0, scaling: RopeScaling = RopeScaling()
    ) -> None:
        super().__init__()
        if d_head % 2:
            raise ValueError(f"rope needs an even head size; got d_head={d_head}")
        self.d_head, self.base, self.scaling = d_head, base, scaling
        self.frequencies: dict[torch.device, Tensor] = {}  # float32 whatever the model's dtype

    def rotation(self, positions: Tensor) -> Rotation:
        inv_freq = self.on(positions.device)
        angles = positions[..., None].to(inv_freq.dtype) * inv_freq  # (..., T, d_head / 2)
        angles = torch.cat([angles, angles], dim=-1)
        if angles.dim() == 3:  # per-row positions: make room for the head axis
            angles = angles[:, None]
        return angles.cos(), angles.sin()

    def on(self, device: torch.device) -> Tensor:
        """theta on `device`, made there once: a CUDA graph's capture may not copy from the
        host, and a step need not (a compiled graph folds the copy into a constant itself)."""
        if torch.compiler.is_compiling():
            return rope_frequencies(self.d_head, self.base, self.scaling).to(device)
        if device not in self.frequencies:
            self.frequencies[device] = rope_frequencies(self.d_head, self.base, self.scaling).to(
                device
            )
        return self.frequencies[device]


def apply_rotary(x: Tensor, rotation: Rotation) -> Tensor:
    """Rotate (B, H, T, d_head) queries or keys by RoPE angles."""
    cos, sin = rotation
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


def alibi_slopes(n_heads: int) -> Tensor:
    """The geometric head slopes of ALiBi (Press et al. 2022): 2^(-8/n), 2^(-16/n), ..."""

    def powers(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(powers(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    return torch.tensor(powers(closest) + powers(2 * closest)[0::2][: n_heads - closest])


class ALiBi(PositionalEncoding):
    """Attention with linear biases: score(i, j) -= slope_h * |i - j|."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def score_bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        # -> (H, T_q, T_k), or (B, H, T_q, T_k) for per-row positions
        distance = (q_positions[..., :, None] - k_positions[..., None, :]).abs()
        return -self.slopes[:, None, None] * distance[..., None, :, :].to(self.slopes.dtype)


@dataclass(frozen=True)
class PositionArgs:
    """What the encodings are built from; each takes the fields it needs."""

    d_model: int
    n_heads: int
    max_len: int
    d_head: int
    rope_base: float = 10000.0
    rope_scaling: RopeScaling = RopeScaling()


POSITIONAL: dict[str, Callable[[PositionArgs], PositionalEncoding]] = {
    "none": lambda a: PositionalEncoding(),
    "sinusoidal": lambda a: Sinusoidal(a.d_model),
    "sinusoidal_halves": lambda a: Sinusoidal(a.d_model, True),
    "learned": lambda a: Learned(a.max_len, a.d_model),
    "rope": lambda a: Rotary(a.d_head, a.rope_base, a.rope_scaling),
    "alibi": lambda a: ALiBi(a.n_heads),
}


def positional_encoding(
    name: str,
    d_model: int,
    n_heads: int,
    max_len: int,
    rope_base: float = 10000.0,
    d_head: int | None = None,
    rope_scaling: RopeScaling = RopeScaling(),
) -> PositionalEncoding:
    """Build a positional encoding by its config name (d_head: d_model / n_heads if unset)."""
    if name not in POSITIONAL:
        raise ValueError(f"positional={name!r} is unknown; expected one of {sorted(POSITIONAL)}")
    d_head = d_head or d_model // n_heads
    return POSITIONAL[name](
        PositionArgs(d_model, n_heads, max_len, d_head, rope_base, rope_scaling)
    )

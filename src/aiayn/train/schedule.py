"""Learning-rate schedules, as multipliers of the optimizer's base rate per step."""

from __future__ import annotations

import math
from collections.abc import Callable


def noam(d_model: int, warmup: int) -> Callable[[int], float]:
    """The paper's (§5.3): d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)."""

    def rate(step: int) -> float:
        step = max(step, 1)
        return d_model**-0.5 * min(step**-0.5, step * max(warmup, 1) ** -1.5)

    return rate


def warmup_cosine(warmup: int, total: int, floor: float = 0.1) -> Callable[[int], float]:
    """Linear warm-up to 1, then a cosine decay to `floor` at step `total`."""

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return rate

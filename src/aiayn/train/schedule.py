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


def noam_peak(d_model: int, warmup: int) -> float:
    """The paper's rate at its peak, the end of warm-up: d_model^-0.5 * warmup^-0.5."""
    return d_model**-0.5 * max(warmup, 1) ** -0.5


class Horizon:
    """The step at which training will stop: `max_steps`, or sooner where a time budget of
    `max_minutes` will bind first, as the pace so far (validations included) predicts.

    A schedule that decays towards it ends its decay when the run ends: on a machine too slow
    for the budget, the cosine reaches its floor at the last step instead of being cut off
    half-way. Where the budget does not bind, it is `max_steps` throughout.
    """

    def __init__(self, max_steps: int, max_minutes: float = 0.0) -> None:
        self.max_steps, self.seconds, self.steps = max_steps, 60 * max_minutes, max_steps

    def update(self, step: int, elapsed: float) -> None:
        if self.seconds and step and elapsed > 0:
            pace = step * self.seconds / elapsed
            self.steps = min(self.max_steps, max(step, int(pace)))


def warmup_cosine(warmup: int, total: int | Horizon, floor: float = 0.1) -> Callable[[int], float]:
    """Linear warm-up to 1, then a cosine decay to `floor` at step `total` (or at the step
    where a `Horizon` says training will stop)."""

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        end = total.steps if isinstance(total, Horizon) else total
        progress = min(1.0, (step - warmup) / max(1, end - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return rate

"""The optimizer and learning-rate schedule a train config asks for, and the config's settings
laid over an optimizer state loaded from a checkpoint."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aiayn.config import TrainConfig
from aiayn.train.schedule import Horizon, noam, warmup_cosine


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    kw = {"lr": t.lr, "betas": (t.beta1, t.beta2), "eps": t.eps, "weight_decay": t.weight_decay}
    return (torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam)(
        model.parameters(), **kw
    )


def make_schedule(
    t: TrainConfig, d_model: int, horizon: Horizon | None = None
) -> Callable[[int], float]:
    """The learning-rate multiplier per step; a cosine decays towards `horizon`'s step."""
    if t.schedule == "noam":
        return noam(d_model, t.warmup)
    return warmup_cosine(t.warmup, horizon or t.max_steps, t.lr_floor)


def apply_hyperparameters(
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, t: TrainConfig
) -> None:
    """The config's optimizer settings over those saved with the optimizer state: a resume
    with `--set train.lr=...` (betas, eps, weight decay) trains with what it says."""
    groups = opt.param_groups
    for group in groups:
        group.update(betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=t.weight_decay)
        group["initial_lr"] = t.lr
    sched.base_lrs = [t.lr] * len(groups)
    factor = sched.lr_lambdas[0](sched.last_epoch)
    for group in groups:
        group["lr"] = t.lr * factor
    sched._last_lr = [g["lr"] for g in groups]

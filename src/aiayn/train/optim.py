"""The optimizer and learning-rate schedule a train config asks for, and the config's settings
laid over an optimizer state loaded from a checkpoint."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aiayn.config import TrainConfig
from aiayn.models.build import TokenEmbedding
from aiayn.train.schedule import Horizon, noam, warmup_cosine


def make_optimizer(
    model: nn.Module, t: TrainConfig, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """Adam or AdamW over `model`'s parameters; on CUDA the fused kernel (one launch updates
    every tensor, not several per tensor)."""
    kw = {"lr": t.lr, "betas": (t.beta1, t.beta2), "eps": t.eps, "weight_decay": t.weight_decay}
    fused = device is not None and device.type == "cuda"
    return (torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam)(
        parameter_groups(model, t.decay), fused=fused or None, **kw
    )


def parameter_groups(model: nn.Module, decay: str) -> list[dict]:
    """One group decayed by train.weight_decay, and with decay = "matrices" a second one that
    is not: biases, norm gains and embeddings, whose size is no sign of overfitting (nanoGPT
    decays tensors of 2 or more dimensions; this also spares its 2-D embeddings)."""
    if decay == "all":
        return [{"params": list(model.parameters()), "decays": True}]
    embeddings = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding | TokenEmbedding)
        for p in m.parameters(recurse=False)
    }
    params = list(model.parameters())  # each tied tensor once
    matrices = [p for p in params if p.dim() >= 2 and id(p) not in embeddings]
    chosen = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in chosen]
    return [
        {"params": matrices, "decays": True},
        {"params": rest, "decays": False, "weight_decay": 0.0},
    ]


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
        decay = t.weight_decay if group.get("decays", True) else 0.0
        group.update(betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=decay)
        group["initial_lr"] = t.lr
    sched.base_lrs = [t.lr] * len(groups)
    factor = sched.lr_lambdas[0](sched.last_epoch)
    for group in groups:
        group["lr"] = t.lr * factor
    sched._last_lr = [g["lr"] for g in groups]

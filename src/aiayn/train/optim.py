"""The optimizer and learning-rate schedule a train config asks for, and the config's settings
laid over an optimizer state loaded from a checkpoint."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aiayn.config import TrainConfig
from aiayn.models.build import TokenEmbedding
from aiayn.train.schedule import Horizon, noam, noam_peak, warmup_cosine


def base_rate(t: TrainConfig, d_model: int) -> float:
    """The optimizer's rate, which the schedule's factor multiplies each step: under cosine
    (a factor that peaks at 1) the peak train.lr; under noam, whose factor is the paper's rate
    with its own peak, train.noam_scale, or the multiple of it that peaks at train.lr, or 1."""
    if t.schedule != "noam":
        return t.lr
    if t.noam_scale is not None:
        return t.noam_scale
    return 1.0 if t.lr is None else t.lr / noam_peak(d_model, t.warmup)


def make_optimizer(
    model: nn.Module,
    t: TrainConfig,
    d_model: int,
    device: torch.device | None = None,
    scales: dict[int, float] | None = None,
) -> torch.optim.Optimizer:
    """Adam or AdamW over `model` (of width `d_model`)'s trainable parameters (a frozen one
    gets no state); on CUDA the fused kernel (one launch updates every tensor, not several per
    tensor). `scales`: a parameter's rate as a multiple of the others' (by id), where it differs."""
    kw = {
        "lr": base_rate(t, d_model),
        "betas": (t.beta1, t.beta2),
        "eps": t.eps,
        "weight_decay": t.weight_decay,
    }
    fused = device is not None and device.type == "cuda"
    return (torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam)(
        scaled(parameter_groups(model, t.decay), scales or {}, kw["lr"]),
        fused=fused or None,
        **kw,
    )


def scaled(groups: list[dict], scales: dict[int, float], lr: float) -> list[dict]:
    """`groups` split by each parameter's rate scale (`lr_scale`, kept for a resume)."""
    if not scales:
        return groups
    out = []
    for group in groups:
        for scale in sorted({scales.get(id(p), 1.0) for p in group["params"]}):
            params = [p for p in group["params"] if scales.get(id(p), 1.0) == scale]
            out.append({**group, "params": params, "lr": lr * scale, "lr_scale": scale})
    return out


def parameter_groups(model: nn.Module, decay: str) -> list[dict]:
    """One group decayed by train.weight_decay, and with decay = "matrices" a second one that
    is not: biases, norm gains and embeddings, whose size is no sign of overfitting (nanoGPT
    decays tensors of 2 or more dimensions; this also spares its 2-D embeddings)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay == "all":
        return [{"params": trainable, "decays": True}]
    embeddings = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding | TokenEmbedding)
        for p in m.parameters(recurse=False)
    }
    params = trainable  # each tied tensor once
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
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    t: TrainConfig,
    d_model: int,
) -> None:
    """The config's optimizer settings over those saved with the optimizer state: a resume
    with `--set train.lr=...` (betas, eps, weight decay) trains with what it says."""
    lr, groups = base_rate(t, d_model), opt.param_groups
    for group in groups:
        decay = t.weight_decay if group.get("decays", True) else 0.0
        group.update(betas=(t.beta1, t.beta2), eps=t.eps, weight_decay=decay)
        group["initial_lr"] = lr * group.get("lr_scale", 1.0)
    sched.base_lrs = [g["initial_lr"] for g in groups]
    factor = sched.lr_lambdas[0](sched.last_epoch)
    for group in groups:
        group["lr"] = group["initial_lr"] * factor
    sched._last_lr = [g["lr"] for g in groups]

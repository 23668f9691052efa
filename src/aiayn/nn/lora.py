"""LoRA (Hu et al. 2021, "Low-Rank Adaptation of Large Language Models"): a frozen linear map
W plus a trainable low-rank update, h = W x + (alpha / r) B A x, with A (r, d_in) and
B (d_out, r). B starts at zero, so an adapted model starts exactly where its base was.

An adapter is attached to an `nn.Linear` of the paper's modules from outside, at the seam
every module has (a forward hook adds its output), so the attention and feed-forward code
stays the paper's and the base's tensors keep their names: an adapter's tensors are named
`<linear>.lora.<target>.A` and `.B`. A fused projection (self-attention's `qkv`,
cross-attention's `kv`) takes one adapter for each of the rows a target owns.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from aiayn.nn.attention import CrossAttention, MultiHeadAttention, SelfAttention
from aiayn.nn.dropout import Dropout
from aiayn.nn.feedforward import FeedForward, GatedFeedForward

TARGETS = ("q", "k", "v", "o", "ff")


class LoRA(nn.Module):
    """The update (alpha / r) B A x of the output rows [start, stop) of a linear map."""

    def __init__(
        self, d_in: int, rows: tuple[int, int], rank: int, alpha: float, dropout: float
    ) -> None:
        super().__init__()
        self.start, self.stop = rows
        self.A = nn.Parameter(torch.empty(rank, d_in))
        self.B = nn.Parameter(torch.zeros(self.stop - self.start, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear's weight, and PEFT's
        self.scale = alpha / rank
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # x: (..., d_in) -> (..., stop - start)
        return (self.drop(x) @ self.A.t() @ self.B.t()) * self.scale

    def delta(self) -> Tensor:
        """The update of the weight's rows [start, stop): (stop - start, d_in)."""
        return (self.B @ self.A) * self.scale


def add_adapters(linear: nn.Linear, inputs: tuple[Tensor], out: Tensor) -> Tensor:
    """The forward hook: W x (+ b) plus each adapter's update in its rows."""
    # x: (..., d_in), out: (..., d_out); each adapter's update padded with zeros to the width
    x, width = inputs[0], out.shape[-1]
    for adapter in linear.lora.values():
        update = adapter(x)
        out = out + nn.functional.pad(update, (adapter.start, width - adapter.stop))
    return out


def target_rows(module: nn.Module, target: str) -> list[tuple[str, tuple[int, int]]]:
    """The linear maps (by attribute name) and their output rows that `target` names in one
    attention or feed-forward module; none where the module has no such projection."""
    if isinstance(module, FeedForward | GatedFeedForward):
        if target != "ff":
            return []
        return [("w_in", (0, module.w_in.out_features)), ("w_out", (0, module.w_out.out_features))]
    if not isinstance(module, MultiHeadAttention):
        return []
    q, kv = module.n_heads * module.d_head, module.n_kv_heads * module.d_head
    if target == "o":
        return [("out", (0, module.d_model))]
    if isinstance(module, SelfAttention):
        rows = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
        return [("qkv", rows[target])] if target in rows else []
    if isinstance(module, CrossAttention):
        rows = {"q": ("q", (0, q)), "k": ("kv", (0, kv)), "v": ("kv", (kv, 2 * kv))}
        return [rows[target]] if target in rows else []
    return []


def attach_lora(
    model: nn.Module, targets: tuple[str, ...], rank: int, alpha: float, dropout: float
) -> list[str]:
    """Attach adapters to every projection `targets` names; the names of the linear maps
    adapted. A target that no module of `model` has is refused by name."""
    adapted, found = [], set()
    for name, module in list(model.named_modules()):
        for target in targets:
            for attr, rows in target_rows(module, target):
                linear = getattr(module, attr)
                if rank > min(linear.in_features, rows[1] - rows[0]):
                    raise ValueError(
                        f"LoRA rank {rank} exceeds the smaller side of {name}.{attr}'s "
                        f"{target} rows ({rows[1] - rows[0]} x {linear.in_features}); "
                        "a lower-rank update is the point"
                    )
                if not hasattr(linear, "lora"):
                    linear.lora = nn.ModuleDict()
                    linear.lora_hook = linear.register_forward_hook(add_adapters)
                    adapted.append(f"{name}.{attr}")
                linear.lora[target] = LoRA(linear.in_features, rows, rank, alpha, dropout)
                found.add(target)
    missing = [t for t in targets if t not in found]
    if missing:
        raise ValueError(
            f"LoRA target {missing[0]!r} is in no layer of this {type(model).__name__}; "
            f"its projections: {', '.join(sorted(found)) or 'none'}"
        )
    return adapted


@torch.no_grad()
def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its linear map (W += (alpha / r) B A) and remove it: the model
    computes the same function as plain linear maps."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module, "lora"):
            for adapter in module.lora.values():
                module.weight[adapter.start : adapter.stop] += adapter.delta()
            del module.lora
            module.lora_hook.remove()
            del module.lora_hook

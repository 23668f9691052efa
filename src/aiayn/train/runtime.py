"""How this machine runs training, apart from what the model is: the precision of its matrix
products (autocast, and for fp16 a gradient scaler), TF32 on GPUs that have it, and
`torch.compile`. Each applies where it exists and says why."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# A scaler state as GradScaler.state_dict() writes it: each a finite number.
SCALER_FIELDS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


class Precision:
    """Autocast of the forward pass to `train.precision`'s type. fp16, whose range is narrow,
    also scales the loss before backward so that small gradients do not flush to zero, and
    unscales them before clipping (torch's GradScaler); bf16 has fp32's range and needs none."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.device, self.dtype = device, DTYPES.get(name)
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"train.precision='bf16': {torch.cuda.get_device_name(device)} has no "
                "bfloat16; use fp16 (with a gradient scaler) or fp32"
            )
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """The gradients at their true size (before dividing, clipping or stepping)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()

    def skip(self) -> bool:
        """Close a step that is not taken (its loss or gradients not finite). fp16's scaler
        must see every step it unscaled end in `update`, or the next `unscale_` fails: here
        it lowers the scale, as the gradients it unscaled were not finite. True when that
        scale may be what overflowed (fp16): a skipped step that is no sign of divergence."""
        if self.scaler is None:
            return False
        self.scaler.update()
        return True

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def check_scaler_state(state: object) -> str | None:
    """What is wrong with a saved scaler state, if anything (it comes from a file)."""
    if not isinstance(state, dict):
        return "a table"
    if state and set(state) != set(SCALER_FIELDS):
        return f"empty or the fields {', '.join(SCALER_FIELDS)}"
    bad = [k for k, v in state.items() if not (isinstance(v, int | float) and v == v)]
    if bad or (state and not 0 < state["scale"] < float("inf")):
        return "finite numbers, with a positive scale"
    return None


def allow_tf32(device: torch.device) -> None:
    """fp32 matrix products on tensor cores (TF32: 10 mantissa bits) on GPUs that have them
    (compute capability 8.0 on, Ampere), as autocast's bf16 already rounds further; CPUs keep
    full fp32."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compiled(forward: nn.Module, on: bool, single: bool = True) -> nn.Module:
    """`forward` compiled by torch.compile for training when `on` (train.compile). In a single
    process as one graph (fullgraph: a graph break is an error, not a silent split into
    several graphs with Python between them; tests/train/test_compile.py holds every family
    to it); under DDP or FSDP (`single` False) their wrappers' hooks split it where gradients
    are reduced, by design, so there it is compiled without fullgraph. Token-budget batches
    change shape at every step: after the first change, torch compiles once for symbolic
    sizes instead of once per shape."""
    if not on:
        return forward
    return torch.compile(forward, fullgraph=single)

"""What the trainer asks of a task: a family's `task` (aiayn.families) is a class of this shape,
made from (cfg, run_dir, resume=, log=)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from aiayn.config import RunConfig


class Task(Protocol):
    cfg: RunConfig
    model: nn.Module
    monitor: str  # the validation metric that picks the best checkpoint and stops early
    higher_is_better: bool  # the direction in which `monitor` improves

    def epoch_batches(self, epoch: int) -> Sequence[Any]: ...
    def collate(self, item: Any) -> Any: ...  # CPU tensors, drawing no random numbers
    def train_loss(
        self, batch: Any, device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]: ...
    def validate(self, device: torch.device) -> dict[str, float]: ...
    def save_assets(self, run_dir: Path) -> None: ...

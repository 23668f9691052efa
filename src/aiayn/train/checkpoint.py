"""The trainer's own files in a run directory: its state (without pickle) and the mean of
its last snapshots. The run directory's format itself is aiayn.run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aiayn.run.atomic import atomic_write
from aiayn.run.weights import check_tensors, load_plain, read_tensors


def save_state(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """Trainer state, unpickled with `weights_only=True`: tensors and plain containers only."""
    return load_plain(path, "trainer state")


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several checkpoints' tensors (paper §6.1)."""
    first = read_tensors(paths[0])
    shapes = {k: v.shape for k, v in first.items()}
    total = {k: v.double() for k, v in first.items()}
    for p in paths[1:]:
        state = read_tensors(p)
        check_tensors(state, shapes, p)
        for k, v in state.items():
            total[k] += v.double()
    return {k: (v / len(paths)).to(first[k].dtype) for k, v in total.items()}

"""Which device a command runs on: how this machine runs a model, never what the model is."""

from __future__ import annotations

import torch

from aiayn.config import DEVICE


def pick_device(name: str, setting: str = "train.device") -> torch.device:
    """The device `name` (auto, cpu, cuda, cuda:N or mps) names, refused, naming `setting`,
    if this machine does not have it; auto is CUDA where there is one, else the CPU."""
    if not isinstance(name, str) or DEVICE.fullmatch(name) is None:
        raise ValueError(f"{setting}={name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # an index past what torch parses (cuda:99999999999999999999)
        raise ValueError(f"{setting}={name!r}: this machine has no such device") from None
    if device.type == "cuda" and device.index is not None:
        present = torch.cuda.device_count()
        missing = device.index >= present
    else:
        present = None
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        missing = device.type in available and not available[device.type]()
    if missing:
        count = f" (it has {present})" if present else ""
        raise ValueError(f"{setting}={name!r}: this machine has no such device{count}")
    return device

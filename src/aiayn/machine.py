"""The machine a measurement ran on, written beside every timed result (benchmarks, ablations):
times differ several-fold between machines, so a figure without its machine means little."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    """CPU model, core count, torch threads and version, and the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }

"""Keep freed memory in the process, as GPU caching allocators do, for CPU training on glibc.

glibc hands each allocation over its (adaptive, at most 32 MB) threshold to the kernel with
mmap and back with munmap when freed, so a training step that allocates the same large tensors
every time (a batch's logits are 65 MB in the Multi30k configuration) pays page faults to
zero them again on every step: the output projection took three times as long as the same
matmul in its backward. Served from the heap and never trimmed, they cost nothing after the
first step: a whole Multi30k run on a 2-core CPU does 12% more tokens per second, with about
the same peak memory.

Token-budget batches change shape at every step, though, so the blocks a step frees seldom fit
the next step's exactly, and a heap never trimmed grows: the demo model on 4.5M pairs peaked
at 1.49-1.55 GB over 200 steps (three runs). Trimmed every TRIM_EVERY steps, it peaked at
1.42-1.47 GB (three runs) in about the same time (109-115 s against 106-118 s; 2-core AMD
EPYC): the pages handed back are faulted in again once per 20 steps, not at every step.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import torch

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int


TRIM_EVERY = 20  # steps


def glibc(name: str) -> Any:
    """A function of glibc's malloc, or None without glibc."""
    try:
        # The process's own symbols hold libc's: no library search (which may run ldconfig).
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep what is freed; False without glibc."""
    mallopt = glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


class CpuHeap:
    """The allocator of CPU training: freed memory kept (`keep_freed_memory`), no oneDNN
    kernel cache (`no_kernel_cache`), and the free pages handed back every TRIM_EVERY steps."""

    def __init__(self) -> None:
        self.trim = glibc("malloc_trim") if keep_freed_memory() else None
        no_kernel_cache()

    @classmethod
    def for_device(cls, device: torch.device) -> CpuHeap | None:
        """The heap settings for training on `device`: on CPUs only (CUDA tensors come from
        torch's own caching allocator, and glibc's settings would only grow the host's heap)."""
        return cls() if device.type == "cpu" else None

    def after_step(self, step: int) -> None:
        if self.trim is not None and step % TRIM_EVERY == 0:
            self.trim(0)


# oneDNN's cache of compiled kernels, one per input shape (1,024 by default)
ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def no_kernel_cache() -> None:
    """Keep no oneDNN kernels between calls, unless the user set the cache's size.

    bf16 matmuls on a CPU run through oneDNN, which keeps a compiled kernel for each input
    shape. Token-budget batches bring new shapes at nearly every step, so the cache, seldom
    hit, grew a demo run by 0.7 GB in 100 steps and kept growing: without it, its peak RSS
    fell from 2.06 GB to 1.39 GB, for about 6% fewer tokens/s (compiling each kernel again;
    2-core AMD EPYC). A run that has the memory to spare sets the variable, e.g. to 1024.
    oneDNN reads it once, at its first kernel.
    """
    os.environ.setdefault(ONEDNN_CACHE, "0")

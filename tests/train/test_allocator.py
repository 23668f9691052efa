import ctypes
import platform
import subprocess
import sys

import pytest

from aiayn.train import allocator

# Allocates, fills and frees a 64 MB tensor twenty times; prints the page faults of the last
# four. The first few grow the heap until its freed blocks, coalesced, fit the next (aligned)
# request: 3 to 8 of them, seen in different checkouts, so 16 are left for that.
FAULTS = """
import resource, sys, torch
from aiayn.train.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(16):
    torch.ones(1 << 24).sum()
start = faults()
for _ in range(4):
    torch.ones(1 << 24).sum()
print(faults() - start)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    pages = 4 * (64 << 20) // 4096  # what four fresh 64 MB tensors fault in
    assert page_faults("default") > pages // 2
    assert page_faults("keep") < pages // 20


def test_without_mallopt_it_reports_false(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert allocator.keep_freed_memory() is False


def test_the_cpu_heap_hands_back_free_pages_every_trim_every_steps(monkeypatch):
    trims = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: True)
    monkeypatch.setattr(
        allocator, "glibc", lambda name: trims.append if name == "malloc_trim" else None
    )
    monkeypatch.setenv(allocator.ONEDNN_CACHE, "")  # so that the test's setting is undone
    monkeypatch.delenv(allocator.ONEDNN_CACHE)
    heap = allocator.CpuHeap()
    for step in range(1, 3 * allocator.TRIM_EVERY + 5):
        heap.after_step(step)
    assert trims == [0, 0, 0]
    assert allocator.os.environ[allocator.ONEDNN_CACHE] == "0"


def test_without_glibc_the_cpu_heap_trims_nothing(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    allocator.CpuHeap().after_step(allocator.TRIM_EVERY)  # no malloc_trim to call

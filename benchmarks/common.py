"""What every benchmark shares: the machine's description, interleaved timing, JSON output."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aiayn.machine import machine

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench.jsonl"


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> dict:
    """Median seconds per call of each function, called in turn round after round."""
    return {name: statistics.median(t) for name, t in round_times(fns, rounds, warmup).items()}


def round_times(
    fns: dict[str, Callable[[], None]], rounds: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each function in each round, the functions called in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict[str, list[float]], ours: str, theirs: str) -> dict[str, float]:
    """How many times as fast `ours` ran as `theirs`, round by round (their seconds over ours
    in the same round): the median and the range. A machine whose speed drifts between rounds
    moves both sides of a round alike, so these vary less than a ratio of two medians."""
    ratios = sorted(b / a for a, b in zip(times[ours], times[theirs], strict=True))
    return {"median": round(statistics.median(ratios), 2), "min": round(ratios[0], 2),
            "max": round(ratios[-1], 2)}  # fmt: skip


def matmul_peak(dtype: torch.dtype, n: int = 2048, device: str = "cpu") -> float:
    """FLOP/s of a large square matrix product in `dtype`: the ceiling MFU is measured against."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = interleaved({"mm": lambda: a @ b}, rounds=5)["mm"]
    return 2 * n**3 / seconds


def report(record: dict) -> None:
    """Print one JSON object and append it to results/bench.jsonl."""
    record = {**record, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    line = json.dumps(record)
    print(line, flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def run_clients(threads: list[threading.Thread]) -> float:
    """Start the clients' threads together and wait for them all: the seconds they took."""
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start

"""Engines timed each group in its own process, called in turn round after round.

Two engines in one process share it: CTranslate2's wheel brings its own OpenMP runtime, and
with it loaded (and run once) aiayn's translate of test_2016_flickr took 5.1-6.6 s against
4.4-5.1 s without it, torch's OpenMP threads then sleeping between parallel regions instead of
spinning (`perf`: their spin gone, the kernel's context switches in its place; 2-core AMD EPYC).
A worker process per group keeps each engine's process as its users have it, while the rounds
stay interleaved, so a drift of the machine's speed still reaches every engine alike.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

# a group's builder: (*args) -> {name: a call to time}, run in the worker
Builder = Callable[..., dict[str, Callable[[], object]]]


def _serve(conn: Connection, build: Builder, args: tuple) -> None:
    calls = build(*args)
    conn.send(list(calls))
    while (name := conn.recv()) is not None:
        start = time.perf_counter()
        calls[name]()
        conn.send(time.perf_counter() - start)


def apart_round_times(
    groups: dict[str, tuple[Builder, tuple]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each named call in each round: each group's calls built and run in
    a process of its own, the calls made in turn (group by group, in order) round by round."""
    ctx, workers, owner = mp.get_context("spawn"), [], {}
    try:
        for build, args in groups.values():
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(there, build, args), daemon=True)
            proc.start()
            workers.append((proc, here))
            owner.update(dict.fromkeys(here.recv(), here))
        times: dict[str, list[float]] = {name: [] for name in owner}
        for r in range(warmup + rounds):
            for name, conn in owner.items():
                conn.send(name)
                seconds = conn.recv()
                if r >= warmup:
                    times[name].append(seconds)
        return times
    finally:
        for proc, conn in workers:
            if proc.is_alive():  # a worker that failed has gone: its error is the one to see
                conn.send(None)
            proc.join(timeout=60)

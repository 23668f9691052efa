import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiayn.serve.batcher import Batcher, Busy, Job


def echo(seen: list):
    def run(items):
        seen.append(list(items))
        return [f"<{item}>" for item in items]

    return run


def test_jobs_that_arrive_together_run_as_one_batch_and_get_their_own_results() -> None:
    seen: list = []
    batcher = Batcher(window_s=0.5)
    gate = threading.Event()
    blocker = batcher.submit(Job("wait", [0], lambda items: [gate.wait()]))
    futures = [batcher.submit(Job("a", [i, i + 100], echo(seen))) for i in range(5)]
    gate.set()
    assert blocker.result(5) == [True]
    assert [f.result(5) for f in futures] == [[f"<{i}>", f"<{i + 100}>"] for i in range(5)]
    assert seen == [[0, 100, 1, 101, 2, 102, 3, 103, 4, 104]]
    assert batcher.stats()["batches"] == 2
    batcher.close()


def test_jobs_of_other_kinds_or_over_the_size_wait_for_their_own_batch() -> None:
    seen: list = []
    batcher = Batcher(window_s=0.5, max_items=3)
    gate = threading.Event()
    batcher.submit(Job("wait", [0], lambda items: [gate.wait()]))
    jobs = [("a", [1]), ("b", [2]), ("b", [3, 4]), ("b", [5, 6])]
    futures = [batcher.submit(Job(key, items, echo(seen))) for key, items in jobs]
    gate.set()
    for f in futures:
        f.result(5)
    assert seen == [[1], [2, 3, 4], [5, 6]]
    batcher.close()


def test_a_failure_reaches_every_request_of_its_batch_and_the_worker_goes_on() -> None:
    batcher = Batcher(window_s=0.2)
    gate = threading.Event()
    batcher.submit(Job("wait", [0], lambda items: [gate.wait()]))

    def broken(items):
        raise RuntimeError("no")

    failing = [batcher.submit(Job("x", [i], broken)) for i in range(3)]
    gate.set()
    for f in failing:
        with pytest.raises(RuntimeError, match="no"):
            f.result(5)
    assert batcher.submit(Job("y", [1], echo([]))).result(5) == ["<1>"]
    batcher.close()


def test_a_full_queue_is_refused_at_once() -> None:
    batcher = Batcher(max_queue=1, window_s=0)
    gate, started = threading.Event(), threading.Event()
    busy = batcher.submit(Job("wait", [0], lambda items: [started.set() or gate.wait()]))
    assert started.wait(5)  # the worker holds the first job; the queue is empty
    queued = batcher.submit(Job("a", [1], echo([])))
    with pytest.raises(Busy, match="queue of 1 requests is full"):
        batcher.submit(Job("a", [2], echo([])))
    gate.set()
    assert busy.result(5) and queued.result(5) == ["<1>"]
    batcher.close()


def test_close_finishes_what_was_queued() -> None:
    batcher = Batcher(window_s=0)
    futures = [batcher.submit(Job(i, [i], echo([]))) for i in range(10)]
    batcher.close()
    assert [f.result(0) for f in futures] == [[f"<{i}>"] for i in range(10)]
    assert not batcher.thread.is_alive()


def test_a_failing_request_fails_alone_and_its_batch_mates_get_their_results() -> None:
    seen: list = []
    batcher = Batcher(window_s=0.5)
    gate = threading.Event()
    batcher.submit(Job("wait", [0], lambda items: [gate.wait()]))

    def picky(items):
        seen.append(list(items))
        if "bad" in items:
            raise ValueError("a bad input")
        return [f"<{item}>" for item in items]

    futures = [batcher.submit(Job("a", items, picky)) for items in (["x"], ["y", "bad"], ["z"])]
    gate.set()
    assert futures[0].result(5) == ["<x>"]
    with pytest.raises(ValueError, match="a bad input"):
        futures[1].result(5)
    assert futures[2].result(5) == ["<z>"]
    # the batch failed whole, then each request ran alone
    assert seen == [["x", "y", "bad", "z"], ["x"], ["y", "bad"], ["z"]]
    batcher.close()


def test_a_cancelled_request_is_skipped_and_later_ones_are_answered() -> None:
    ran: list = []
    batcher = Batcher(window_s=0)
    gate, started = threading.Event(), threading.Event()
    batcher.submit(Job("wait", [0], lambda items: [started.set() or gate.wait()]))
    assert started.wait(5)

    async def give_up() -> None:  # as a route's coroutine is cancelled: a timeout, a stop
        waiting = asyncio.wrap_future(batcher.submit(Job("a", [1], echo(ran))))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiting, 0.05)

    asyncio.run(give_up())
    gate.set()
    assert batcher.submit(Job("a", [2], echo(ran))).result(5) == ["<2>"]
    assert ran == [[2]]  # the cancelled request was never computed
    assert batcher.thread.is_alive()
    batcher.close()


def test_the_worker_survives_a_fault_of_its_own() -> None:
    batcher = Batcher(window_s=0)
    short = batcher.submit(Job("a", [1, 2], lambda items: ["one result"]))
    with pytest.raises(RuntimeError, match="a batch of 2 items gave 1 results"):
        short.result(5)
    nothing = batcher.submit(Job("b", [1], lambda items: None))
    with pytest.raises(TypeError):
        nothing.result(5)
    assert batcher.submit(Job("c", [3], echo([]))).result(5) == ["<3>"]
    batcher.close()


# jobs of two kinds, each of 1-3 items (the item 13 fails its batch), some cancelled
JOBS = st.lists(
    st.tuples(
        st.sampled_from("ab"),
        st.lists(st.integers(10, 15), min_size=1, max_size=3),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=30, deadline=None)
@given(JOBS)
def test_any_mix_of_failing_and_cancelled_requests_gets_its_own_answers(jobs) -> None:
    ran: list = []

    def run(items):
        ran.extend(items)
        if any(value == 13 for _, value in items):
            raise ValueError("13")
        return [(n, 2 * value) for n, value in items]

    batcher = Batcher(window_s=0.01, max_items=6)
    gate, started = threading.Event(), threading.Event()
    batcher.submit(Job("wait", [0], lambda items: [started.set() or gate.wait()]))
    assert started.wait(5)
    submitted = []
    for n, (key, values, cancel) in enumerate(jobs):
        items = [(n, v) for v in values]
        submitted.append((batcher.submit(Job(key, items, run)), items, cancel))
    for future, _, cancel in submitted:
        if cancel:
            assert future.cancel()
    gate.set()
    for future, items, cancel in submitted:
        if cancel:
            assert future.cancelled() and not set(items) & set(ran)
        elif any(v == 13 for _, v in items):
            with pytest.raises(ValueError, match="13"):
                future.result(5)
        else:
            assert future.result(5) == [(n, 2 * v) for n, v in items]
    assert batcher.submit(Job("z", [(99, 1)], run)).result(5) == [(99, 2)]
    batcher.close()

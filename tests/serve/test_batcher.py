import threading

import pytest

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
    busy = batcher.submit(Job("wait", [0], lambda items: [started.set(), gate.wait()]))
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

"""Dynamic batching: requests that arrive close together are decoded as one batch.

Requests wait in a bounded queue (a full one is refused at once: the caller answers 503, never
an unbounded wait). One worker thread owns the model: it takes the oldest job, then for up to
`window_s` gathers later jobs that may share its batch (the same kind and decoding options),
up to `max_items` texts, and runs them together. The decoder splits what it is given into
batches bounded in tokens (decode.batch_tokens), so a gathered batch never exceeds the memory
a batch of the run's own size needs.

One request never fails another: when a batch raises, each of its jobs runs again alone, so
that only the one that caused it gets the error. A job whose caller has gone (its future was
cancelled: a client's timeout, the end of a graceful stop) is skipped, and nothing a job does
stops the worker.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """The queue is full: the caller should answer 503 and ask the client to retry."""


@dataclass
class Job:
    """Texts (or one request) to run; jobs with equal `key` may run as one batch, through
    `run` (all the batch's items -> one result per item)."""

    key: Hashable
    items: list[Any]
    run: Callable[[list[Any]], list[Any]]
    future: Future = field(default_factory=Future)


class Batcher:
    """A bounded queue of jobs and the one thread that runs them, gathered into batches."""

    def __init__(self, max_queue: int = 64, window_s: float = 0.005, max_items: int = 256):
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)  # None: stop
        self.window_s, self.max_items = window_s, max_items
        self.held: list[Job | None] = []  # taken from the queue, for the next batch
        self.batches = self.items = 0
        self.thread = threading.Thread(target=self._work, name="aiayn-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Future:
        """Queue `job`; its future gets the results in item order, or the exception raised."""
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Busy(f"the queue of {self.jobs.maxsize} requests is full") from None
        return job.future

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        self.jobs.put(None)
        self.thread.join()

    def stats(self) -> dict[str, int]:
        return {"queued": self.jobs.qsize(), "batches": self.batches, "items": self.items}

    def _work(self) -> None:
        while (batch := self._gather()) is not None:
            # RUNNING from here: a later cancel() is refused, so a result can always be set
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            try:
                self._run(live)
            except Exception as e:  # a fault of the server's own: these jobs fail, not the rest
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(e)

    def _gather(self) -> list[Job] | None:
        first = self.held.pop() if self.held else self.jobs.get()
        if first is None:
            return None
        batch, count = [first], len(first.items)
        deadline = time.monotonic() + self.window_s
        while count < self.max_items and (left := deadline - time.monotonic()) > 0:
            try:
                job = self.jobs.get(timeout=left)
            except queue.Empty:
                break
            if job is None or job.key != first.key or count + len(job.items) > self.max_items:
                self.held.append(job)  # the first of the next batch (or the stop)
                break
            batch.append(job)
            count += len(job.items)
        return batch

    def _run(self, batch: list[Job]) -> None:
        if not batch:
            return
        items = [item for job in batch for item in job.items]
        try:
            results = batch[0].run(items)
        except Exception as e:
            if len(batch) == 1:
                batch[0].future.set_exception(e)
            else:  # which job caused it? each alone: the others get their results
                for job in batch:
                    self._run([job])
            return
        if len(results) != len(items):
            raise RuntimeError(f"a batch of {len(items)} items gave {len(results)} results")
        self.batches, self.items = self.batches + 1, self.items + len(items)
        start = 0
        for job in batch:
            job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)

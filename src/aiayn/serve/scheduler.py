"""Generation with continuous batching (aiayn.decode.continuous) on one worker thread.

A request's sequences wait in a bounded queue (a full one is refused at once: the caller
answers 503) and join the running batch at its next step, up to `max_rows` rows; each leaves
the batch when it ends, when its caller cancels it (the client went away) or when it has run
`time_limit_s`, and its text so far is its result (finish_reason "length" for the time limit,
"cancelled" for a caller that went away). The worker holds the model's lock for each step,
so that the other batcher's jobs (attention maps, /v1/generate) never run beside it. A step
that fails is run again for each sequence alone: only the one that caused it fails.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.continuous import RunningBatch, Sampling, Sequence
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.serve import MAX_ROWS, TIME_LIMIT_S
from aiayn.serve.batcher import Busy


@dataclass(frozen=True)
class Finished:
    text: str
    finish_reason: str  # "stop", "length", "cancelled"
    tokens: int  # chosen, the end id included


@dataclass
class Ticket:
    """One sequence to generate: `emit` gets each piece of new text (on the worker thread);
    the future gets a `Finished`. Set `cancelled` to end it at the next step."""

    prompt: list[int]
    sampling: Sampling
    emit: Callable[[str], None] = lambda _: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)


class Scheduler:
    """A bounded queue of tickets and the thread that decodes them in one running batch."""

    def __init__(
        self,
        model: DecoderOnlyLM,
        tok: TextTokenizer,
        lock: threading.Lock,
        max_queue: int = 64,
        max_rows: int = MAX_ROWS,
        time_limit_s: float = TIME_LIMIT_S,
    ) -> None:
        self.batch, self.lock = RunningBatch(model, tok), lock
        self.waiting: queue.Queue[Ticket | None] = queue.Queue(maxsize=max_queue)  # None: stop
        self.max_rows, self.time_limit_s = max_rows, time_limit_s
        self.live: dict[Sequence, tuple[Ticket, float, list[str]]] = {}
        self.steps = self.generated = 0
        self.stopping = False
        self.queue_lock = threading.Lock()
        self.thread = threading.Thread(target=self._work, name="aiayn-generate", daemon=True)
        self.thread.start()

    def submit(self, tickets: list[Ticket]) -> None:
        """Queue all of `tickets` or none (Busy: the queue has no room for them all)."""
        with self.queue_lock:  # room checked and taken at once
            if self.waiting.maxsize - self.waiting.qsize() < len(tickets):
                raise Busy(f"the queue of {self.waiting.maxsize} sequences is full")
            for t in tickets:
                self.waiting.put_nowait(t)

    def close(self) -> None:
        """Finish every queued and running sequence, then stop the worker."""
        self.waiting.put(None)
        self.thread.join()

    def stats(self) -> dict[str, int]:
        return {"generating": len(self.live), "steps": self.steps, "tokens": self.generated}

    def _work(self) -> None:
        while not (self.stopping and not self.live):
            self._admit()
            if not self.live:
                continue
            self._drop_ended()
            if not self.live:
                continue
            try:
                with self.lock:
                    pieces = self.batch.step()
            except Exception:  # which sequence caused it? each steps alone
                self._isolate()
                continue
            self.steps += 1
            for seq, piece in pieces:
                self._deliver(seq, piece)

    def _admit(self) -> None:
        """Take waiting tickets while there is room (waiting for one when none runs)."""
        while not self.stopping and len(self.live) < self.max_rows:
            try:
                ticket = self.waiting.get(block=not self.live)
            except queue.Empty:
                return
            if ticket is None:
                self.stopping = True
                return
            if not ticket.future.set_running_or_notify_cancel():
                continue
            try:
                seq = self.batch.add(ticket.prompt, ticket.sampling)
            except Exception as e:  # its own fault (an empty prompt): the worker goes on
                ticket.future.set_exception(e)
                continue
            self.live[seq] = (ticket, time.monotonic() + self.time_limit_s, [])

    def _drop_ended(self) -> None:
        """End the sequences whose caller went away or whose time is up: the latter with the
        text held back for a stop string or an unfinished character, as at max_tokens."""
        now, gone = time.monotonic(), []
        for seq, (ticket, deadline, _) in self.live.items():
            if ticket.cancelled.is_set() or now > deadline:
                seq.finish = "cancelled" if ticket.cancelled.is_set() else "length"
                gone.append(seq)
        self.batch.remove(gone)
        for seq in gone:
            held = (
                "" if seq.finish == "cancelled" else seq.row.end(self.batch.tok, seq.sampling.stop)
            )
            self._deliver(seq, held)

    def _deliver(self, seq: Sequence, piece: str) -> None:
        ticket, _, text = self.live[seq]
        if piece:
            text.append(piece)
            try:
                ticket.emit(piece)
            except Exception as e:  # the caller's own fault: only its sequence ends
                self.batch.remove([seq])
                self._fail(seq, e)
                return
        if seq.finish is not None:
            del self.live[seq]
            self.generated += seq.tokens
            ticket.future.set_result(Finished("".join(text), seq.finish, seq.tokens))

    def _isolate(self) -> None:
        """A step failed: each sequence steps again alone, so that only the one that caused it
        fails (as the batcher runs a failed batch's jobs again alone); the others join again."""
        for alone in self.batch.split():
            [seq] = alone.reading
            try:
                with self.lock:
                    pieces = alone.step()
            except Exception as e:
                self._fail(seq, e)
                continue
            self.steps += 1
            self.batch.absorb(alone)
            for s, piece in pieces:
                self._deliver(s, piece)

    def _fail(self, seq: Sequence, error: Exception) -> None:
        ticket, _, _ = self.live.pop(seq)
        ticket.future.set_exception(error)

"""Continuous batching through the server: a short request is not held behind a long one,
each gives the tokens it gives alone, a client that goes away ends its generation, and the
time limit and the queue's bound hold."""

import json
import threading
import time

import pytest

import aiayn
from aiayn.decode.continuous import RunningBatch, Sampling
from aiayn.serve.batcher import Busy
from aiayn.serve.client import Client
from aiayn.serve.scheduler import Scheduler, Ticket
from tests.serve.inprocess import call, engine
from tests.serve.test_openai import client


def test_a_short_request_finishes_during_a_long_one_each_as_alone(lm_url, lm_run) -> None:
    name, finished, texts = lm_run.resolve().name, {}, {}

    def ask(key: str, prompt: str, max_tokens: int) -> None:
        chunks = client(lm_url).completions.create(
            model=name, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True
        )
        texts[key] = "".join(c.choices[0].text for c in chunks)
        finished[key] = time.monotonic()

    long = threading.Thread(target=ask, args=("long", "to be", 512))
    long.start()
    while call(lm_url, "/v1/stats")[1].get("steps", 0) < 5:  # the long one is decoding
        time.sleep(0.01)
    ask("short", "that is", 8)
    long.join()
    assert finished["short"] < finished["long"]
    e = engine(lm_run)
    model, tok = e.model, e.tok
    assert texts["long"] == aiayn.generate(model, tok, "to be", 512, temperature=0.0)
    assert texts["short"] == aiayn.generate(model, tok, "that is", 8, temperature=0.0)
    assert len(texts["long"]) == 512  # a character a token, no end id: 16 refills of max_len 32


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_goes_away_ends_its_generation(lm_url, lm_run, stream) -> None:
    body = {"model": lm_run.resolve().name, "prompt": "to", "max_tokens": 4096, "stream": stream}
    before = call(lm_url, "/v1/stats")[1].get("tokens", 0)
    gone = Client(lm_url)
    if stream:  # gone after two chunks
        events = gone.events("/v1/completions", body)
        next(events), next(events)
    else:  # gone while it waits for the whole text
        gone.conn.request("POST", "/v1/completions", json.dumps(body).encode())
        while call(lm_url, "/v1/stats")[1].get("generating", 0) == 0:
            time.sleep(0.01)
    gone.close()
    deadline = time.monotonic() + 10
    while call(lm_url, "/v1/stats")[1]["generating"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = call(lm_url, "/v1/stats")[1]
    assert stats["generating"] == 0 and 1 <= stats["tokens"] - before < 4096


@pytest.fixture(scope="module")
def scheduler(lm_run):
    e = engine(lm_run)
    s = Scheduler(e.model, e.tok, threading.Lock(), max_queue=2, time_limit_s=0.3)
    yield s, e
    s.close()


def test_the_time_limit_and_the_queue_bound(scheduler) -> None:
    s, e = scheduler
    ticket = Ticket(e.prompt_ids("to"), Sampling(max_tokens=100_000, temperature=0.0))
    s.submit([ticket])
    done = ticket.future.result(timeout=30)
    assert done.finish_reason == "length" and 0 < done.tokens < 100_000
    three = [Ticket(e.prompt_ids("to"), Sampling(max_tokens=1)) for _ in range(3)]
    with pytest.raises(Busy, match="queue of 2"):
        s.submit(three)
    assert not any(t.future.done() for t in three)  # none of them was queued


def test_a_sequence_whose_step_fails_fails_alone(lm_run, monkeypatch) -> None:
    """A draw that raises for one sequence fails its request only; the others, whose draws
    came before and after it in the failed step, give what they give alone."""
    draw = RunningBatch._draw

    def rigged(s, logits):
        if s.sampling.seed == 13:
            raise ValueError("rigged")
        return draw(s, logits)

    monkeypatch.setattr(RunningBatch, "_draw", staticmethod(rigged))
    e = engine(lm_run)
    asks = [("to", 1), ("that", 13), ("be", 2)]
    tickets = [Ticket(e.prompt_ids(p), Sampling(20, 1.0, seed=seed)) for p, seed in asks]
    s = Scheduler(e.model, e.tok, threading.Lock())
    s.submit(tickets)
    with pytest.raises(ValueError, match="rigged"):
        tickets[1].future.result(timeout=30)
    got = [tickets[i].future.result(timeout=30).text for i in (0, 2)]
    s.close()
    alone = [aiayn.generate(e.model, e.tok, p, 20, temperature=1.0, seed=n) for p, n in asks[::2]]
    assert got == alone


def test_the_time_limit_gives_out_the_text_held_for_a_stop_string(scheduler) -> None:
    """Every character the model writes may begin a stop string, so the last one is always
    held back; at the time limit it is given out, as at max_tokens (a character a token)."""
    s, e = scheduler
    stops = tuple(f"{c}#" for c in " atoseiqub,hnrdm")
    ticket = Ticket(e.prompt_ids("to"), Sampling(max_tokens=100_000, temperature=0.0, stop=stops))
    s.submit([ticket])
    done = ticket.future.result(timeout=30)
    assert done.finish_reason == "length" and len(done.text) == done.tokens > 0


def test_a_ticket_the_batch_cannot_take_fails_alone(scheduler) -> None:
    """An empty prompt (refused by the routes, not by a Ticket) fails its own future; the
    worker goes on (it died, and every later request waited forever)."""
    s, e = scheduler
    bad, good = Ticket([], Sampling(max_tokens=2)), Ticket(e.prompt_ids("to"), Sampling(2, 0.0))
    s.submit([bad, good])
    with pytest.raises(ValueError, match="at least one token"):
        bad.future.result(timeout=10)
    assert good.future.result(timeout=10).tokens == 2

"""One bad request never fails another: requests batched together with one that is refused,
or with one that makes the model fail, get their own answers (a server in this process, its
batcher held until every request is queued, so that they share one batch)."""

import threading
import time

import pytest
import torch

from aiayn.serve.batcher import Batcher, Job
from aiayn.serve.engines import load_engine
from tests.serve.inprocess import call, serving


@pytest.fixture(scope="module")
def classifier(classifier_run):
    return load_engine(classifier_run, None, torch.device("cpu"), lambda _: None)


def together(url: str, batcher: Batcher, bodies: list[dict], queued: int) -> list[tuple]:
    """Send `bodies` at once while the batcher's worker is held, let it go once `queued` of
    them wait in its queue; their (status, answer)s."""
    gate, started = threading.Event(), threading.Event()
    batcher.submit(Job("hold", [0], lambda items: [started.set() or gate.wait()]))
    assert started.wait(5)
    results: list = [None] * len(bodies)

    def send(i: int) -> None:
        results[i] = call(url, "/v1/classify", bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while batcher.jobs.qsize() < queued and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # any refused request has been answered by now
    gate.set()
    for t in threads:
        t.join(60)
    return results


def test_a_lone_surrogate_is_refused_before_batching_and_its_neighbours_answered(
    classifier,
) -> None:
    batcher = Batcher(window_s=0.5)
    with serving(classifier, batcher) as url:
        bodies = [{"text": ["a fine film"]}, {"text": ["\ud800"]}, {"text": ["a dull film"]}]
        (ok1, a1), (bad, refusal), (ok2, a2) = together(url, batcher, bodies, queued=2)
    assert (ok1, ok2) == (200, 200) and a1["labels"] and a2["labels"]
    assert (bad, refusal["field"]) == (422, "text[0]")
    assert "not valid UTF-8" in refusal["error"]


def test_a_failure_in_a_batch_reaches_only_the_request_that_caused_it(
    classifier, monkeypatch
) -> None:
    seen: list = []
    real = classifier.classifier.probabilities

    def probabilities(texts):
        seen.append(list(texts))
        if "BOOM" in texts:
            raise RuntimeError("a fault this text causes")
        return real(texts)

    monkeypatch.setattr(classifier.classifier, "probabilities", probabilities)
    batcher = Batcher(window_s=0.5)
    with serving(classifier, batcher) as url:
        bodies = [{"text": ["a fine film"]}, {"text": ["BOOM"]}, {"text": ["a dull film"]}]
        results = together(url, batcher, bodies, queued=3)
    assert [status for status, _ in results] == [200, 500, 200], results
    assert "a fault this text causes" in results[1][1]["error"]
    assert len(seen[0]) == 3  # they did share a batch, which failed; then each ran alone
    assert sorted(map(tuple, seen[1:])) == [("BOOM",), ("a dull film",), ("a fine film",)]


def test_requests_cancelled_by_a_stop_are_skipped_and_the_worker_ends_cleanly(
    classifier, monkeypatch
) -> None:
    """The graceful stop's timeout cancels the requests still waiting: they are answered 503
    in JSON, and the worker, once free, neither computes them nor dies setting their results
    (InvalidStateError)."""
    seen: list = []
    real = classifier.classifier.probabilities
    monkeypatch.setattr(
        classifier.classifier, "probabilities", lambda texts: seen.append(texts) or real(texts)
    )
    died: list = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    batcher = Batcher(window_s=0)
    gate, started = threading.Event(), threading.Event()
    batcher.submit(Job("hold", [0], lambda items: [started.set() or gate.wait()]))
    assert started.wait(5)
    threads, answers = [], []
    with serving(classifier, batcher, grace_s=0.3) as url:
        for text in ("a fine film", "a dull film"):
            body = {"text": [text]}
            send = lambda b=body: answers.append(call(url, "/v1/classify", b))  # noqa: E731
            threads.append(threading.Thread(target=send))
            threads[-1].start()
        while batcher.jobs.qsize() < 2:
            time.sleep(0.01)
        threading.Timer(1.0, gate.set).start()  # frees the worker after the stop's timeout
    for t in threads:
        t.join(10)
    assert not batcher.thread.is_alive()  # the stop closed the batcher: the worker ended
    assert seen == [] and died == [], (seen, died)
    assert [status for status, _ in answers] == [503, 503], answers
    assert "the server is stopping" in answers[0][1]["error"]

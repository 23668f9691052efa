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

"""Requests of every bad kind, a full queue, and a stop while requests are in flight."""

import http.client
import json
import threading
import time
from pathlib import Path

import pytest

from aiayn.serve.client import Server
from aiayn.serve.schema import MAX_BODY, MAX_CHARS, MAX_TEXTS

TRANSLATE = "/v1/translate"
# (path, raw body, expected status, the field or limit the error must name)
BAD = [
    (TRANSLATE, b'{"text": ["a man"', 422, "body"),
    (TRANSLATE, b"\xff\xfe not text", 422, "body"),
    (TRANSLATE, b'["a man"]', 422, "body"),
    (TRANSLATE, b'{"text": "a man"}', 422, "text"),
    (TRANSLATE, b'{"text": ["a man", 3]}', 422, "text[1]"),
    (TRANSLATE, b'{"text": ["a man", "\\ud800 lone"]}', 422, "text[1]"),
    (TRANSLATE, b'{"text": ["a man"], "n_best": 1' + b"0" * 400 + b"}", 422, "n_best"),
    (TRANSLATE, b"[" * 10_000 + b"]" * 10_000, 400, "body"),
    (TRANSLATE, b'{"text": ["a man"], "beam": 0}', 422, "beam"),
    (TRANSLATE, b'{"text": ["a man"], "beam": "5"}', 422, "beam"),
    (TRANSLATE, b'{"text": ["a man"], "beam": 1e400}', 422, "beam"),
    (TRANSLATE, b'{"text": ["a man"], "alpha": -1}', 422, "alpha"),
    (TRANSLATE, b'{"text": ["a man"], "alpha": NaN}', 422, "alpha"),
    (TRANSLATE, b'{"text": ["a man"], "beam": 2, "n_best": 3}', 422, "n_best"),
    (TRANSLATE, b'{"text": ["a man"], "bean": 2}', 422, "bean"),
    (TRANSLATE, b"{}", 422, "text"),
    (TRANSLATE, b"x" * (MAX_BODY + 1), 413, f"{MAX_BODY:,}"),
    (TRANSLATE, json.dumps({"text": ["a"] * (MAX_TEXTS + 1)}).encode(), 413, f"{MAX_TEXTS}"),
    (TRANSLATE, json.dumps({"text": ["a" * (MAX_CHARS + 1)]}).encode(), 413, f"{MAX_CHARS:,}"),
    ("/v1/attention", json.dumps({"text": "a" * (MAX_CHARS + 1)}).encode(), 413, "10,000"),
    ("/v1/attention", b'{"text": ["a man"]}', 422, "text"),
    ("/v1/generate", b'{"prompt": "a"}', 404, "encoder_decoder"),
    ("/v1/classify", b'{"text": ["a"]}', 404, "encoder_decoder"),
    ("/v1/nothing", b"{}", 404, "Not Found"),
    ("/static/../../../etc/passwd", None, 404, "Not Found"),
    ("/v1/translate", None, 405, "Method Not Allowed"),
]


def request(server: Server, path: str, raw: bytes | None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    conn.request("GET" if raw is None else "POST", path, raw)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body, dict(response.getheaders())


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def test_200_bad_requests_then_a_good_one(translation_server) -> None:
    def one_round(count: int) -> None:
        for i in range(count):
            path, raw, status, named = BAD[i % len(BAD)]
            got, body, _ = request(translation_server, path, raw)
            assert got == status, (path, raw[:60] if raw else raw, body)
            assert named in body["error"], (named, body)
            if status in (400, 422):
                assert body["field"] == named

    one_round(2 * len(BAD))  # the first of each kind grows the server's caches, once
    before = rss_kb(translation_server.process.pid)
    one_round(200)
    grown = rss_kb(translation_server.process.pid) - before
    assert grown < 20_000, f"the server grew by {grown} kB over 200 bad requests"
    status, answer = translation_server.call(TRANSLATE, {"text": ["a man sees the dog"]})
    assert status == 200 and answer["translations"][0]["text"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "to", "temperature": -0.1}, "temperature"),
        ({"prompt": "to", "top_p": 0}, "top_p"),
        ({"prompt": "to", "top_p": 1.5}, "top_p"),
        ({"prompt": "to", "top_k": -1}, "top_k"),
        ({"prompt": "to", "seed": -1}, "seed"),
        ({"prompt": "to", "max_new_tokens": 10**6}, "max_new_tokens"),
        ({"prompt": "to", "stream": "yes"}, "stream"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 3}, "prompt"),
        # values the schema let through, that failed later with a 500
        ({"prompt": "to", "temperature": 1e-300}, "temperature"),
        ({"prompt": "to", "temperature": 5e-324}, "temperature"),
        ({"prompt": "to", "stop": [""]}, "stop[0]"),
        ({"prompt": "to", "stop": ["x", ""], "stream": True}, "stop[1]"),
        ({"prompt": "to", "stop": ["x" * 10_000]}, "stop[0]"),
        ({"prompt": "to", "stop": ["\udfff"]}, "stop[0]"),
        ({"prompt": "to be \ud800"}, "prompt"),
        ({"prompt": "to", "top_p": float("nan")}, "top_p"),
        ({"prompt": "to", "seed": 2**64}, "seed"),
        ({"prompt": "to", "top_k": 1.5}, "top_k"),
    ],
)
def test_bad_sampling_settings_are_422_naming_the_field(lm_server, body, field) -> None:
    status, answer = lm_server.call("/v1/generate", body)
    assert status == 422 and answer["field"] == field, answer
    assert answer["error"].startswith(f"{field}: ")


def test_a_tiny_temperature_or_a_long_stop_list_within_bounds_is_answered(lm_server) -> None:
    body = {"prompt": "to", "max_new_tokens": 5, "temperature": 1e-3, "stop": ["z" * 100] * 16}
    status, answer = lm_server.call("/v1/generate", body)
    assert status == 200 and len(answer["text"]) <= 5


def test_an_empty_text_to_attend_to_is_422_naming_it(lm_server) -> None:
    status, answer = lm_server.call("/v1/attention", {"text": ""})
    assert (status, answer["field"]) == (422, "text")
    status, answer = lm_server.call("/v1/attention", {"text": "to \ud800"})
    assert (status, answer["field"]) == (422, "text")
    status, answer = lm_server.call("/v1/attention", {"text": "to be", "target": "x"})
    assert (status, answer["field"]) == (422, "target")


def long_generation(server: Server, results: list, i: int, tokens: int = 300) -> None:
    client = server.client()
    try:
        # seeded: an unseeded sample of the tiny model could end at once, with no text
        request = {"prompt": "to be", "max_new_tokens": tokens, "seed": i}
        results[i] = client.call("/v1/generate", request)
    except OSError as e:
        results[i] = e
    finally:
        client.close()


def wait_for(server: Server, ready, what: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, stats = server.call("/v1/stats")
        stats["in_flight"] -= 1  # less this request itself
        if ready(stats):
            return stats
        time.sleep(0.02)
    raise AssertionError(f"never {what}: {stats}")


def test_a_full_queue_answers_503_with_retry_after(lm_run) -> None:
    body = json.dumps({"prompt": "to be", "max_new_tokens": 4000}).encode()
    with Server(lm_run, "--max-queue", "1") as server:
        results: list = [None] * 6
        barrier = threading.Barrier(6)

        def send(i: int) -> None:
            barrier.wait()
            results[i] = request(server, "/v1/generate", body)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # one runs, one waits in the queue; those that find it full are refused at once
        refused = [(body, headers) for status, body, headers in results if status == 503]
        assert len(refused) >= 3, [r[:2] for r in results]
        for body, headers in refused:
            assert headers["retry-after"] == "1" and "queue of 1 requests is full" in body["error"]
        assert all(status == 200 for status, *_ in results if status != 503)
        assert server.call("/health") == (200, {"status": "ok"})


def test_sigterm_answers_the_16_requests_in_flight_then_exits_0(lm_run) -> None:
    server = Server(lm_run)
    results: list = [None] * 16
    threads = [
        threading.Thread(target=long_generation, args=(server, results, i)) for i in range(16)
    ]
    for t in threads:
        t.start()
    stats = wait_for(server, lambda s: s["in_flight"] == 16, "16 requests in flight")
    server.process.send_signal(15)
    for t in threads:
        t.join(120)
    assert server.process.wait(120) == 0, "".join(server.log)
    assert stats["batches"] < 16  # some were still waiting when the signal came
    for status, answer in results:
        assert status == 200 and answer["text"], results
    assert "stopped: every request received was answered" in "".join(server.log)

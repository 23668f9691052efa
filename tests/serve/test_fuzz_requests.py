"""Arbitrary request bodies against every endpoint of real servers: JSON of any shape, values of
the wrong type or out of range, random bytes, and clients that hang up before the answer or
during a stream. The answer is never a 5xx; a 4xx is JSON naming the field to blame; a stream
that starts ends in `done`; and the server still answers good requests."""

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiayn.serve.client import Server

FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
TRICKY = ["\ud800", "\udfff", "\x00", "\u2028", "\ufffd", "😀", "é", "<pad>", "\n", " "]
TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=12).map("".join)
# no integer that would be a valid but costly setting (4,000 new tokens, a beam of 60)
INTEGER = st.one_of(
    st.integers(-3, 4), st.sampled_from([2**31, 2**63, 2**64, -(2**64), 10**100, 10**4000])
)
NUMBER = st.one_of(st.floats(), st.sampled_from([1e-300, 5e-324, -0.0, 1e-3, 1e300]))
VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), INTEGER, NUMBER, TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
FIELDS = {
    "/v1/translate": ["text", "beam", "alpha", "n_best"],
    "/v1/classify": ["text"],
    "/v1/generate": ["prompt", "temperature", "top_k", "top_p", "seed", "stop", "stream"],
    "/v1/attention": ["text", "target"],
}
GOOD = {
    "/v1/translate": {"text": ["a man"], "beam": 1},
    "/v1/classify": {"text": ["a fine film"]},
    "/v1/generate": {"prompt": "to be", "max_new_tokens": 4},
    "/v1/attention": {"text": "a man"},
}
SERVED = [
    ("translation_server", "/v1/translate"),
    ("classifier_server", "/v1/classify"),
    ("lm_server", "/v1/generate"),
    ("lm_server", "/v1/attention"),
    ("translation_server", "/v1/attention"),
]


def body_for(path: str) -> st.SearchStrategy:
    """A JSON object with some of the endpoint's fields, of any value, now and then another."""
    optional = {name: VALUE for name in FIELDS[path]}
    if path in ("/v1/translate", "/v1/classify"):
        optional["text"] = st.one_of(st.lists(TEXT, max_size=4), VALUE)
    fields = st.fixed_dictionaries(
        {"max_new_tokens": INTEGER} if path == "/v1/generate" else {},  # never the default 100
        optional=optional,
    )
    extra = st.dictionaries(TEXT, VALUE, max_size=1)
    return st.one_of(
        st.builds(lambda f, e: {**e, **f}, fields, extra),
        VALUE,
    ).map(lambda value: json.dumps(value).encode())


PIECES = [b"{", b"}", b"[", b'"text"', b":", b",", b"\xff", b"\\ud800"]
RAW = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(PIECES)).map(b"".join),
    st.just(b'{"text": ["a"], "beam": ' + b"9" * 5000 + b"}"),  # past Python's int digits
)


def send(server: Server, path: str, raw: bytes, hang_up: bool) -> None:
    """POST `raw`; check the answer (none when the client hangs up at once, or after the
    first chunk of a stream)."""
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, raw, {"Content-Type": "application/json"})
    if hang_up and b'"stream": true' not in raw:
        conn.close()
        return
    response = conn.getresponse()
    status, kind = response.status, response.getheader("Content-Type", "")
    if kind.startswith("text/event-stream"):
        assert status == 200
        if hang_up:
            response.read(1)
        else:
            events = response.read().decode().strip().split("\n\n")
            assert events[-1].startswith("event: done"), events[-1]
        conn.close()
        return
    answer = json.loads(response.read())
    conn.close()
    assert status < 500, (status, answer, raw[:200])
    if status >= 400:
        assert isinstance(answer["error"], str) and isinstance(answer["field"], str), answer
        assert answer["field"] in answer["error"], answer


def still_answers(server: Server, path: str) -> None:
    status, answer = server.call(path, GOOD[path])
    assert status == 200, answer


@pytest.mark.parametrize(("server", "path"), SERVED)
def test_any_json_body_is_answered_or_refused_naming_a_field(request, server, path) -> None:
    server = request.getfixturevalue(server)

    @FUZZ
    @given(body=body_for(path), hang_up=st.booleans())
    def fuzz(body: bytes, hang_up: bool) -> None:
        send(server, path, body, hang_up)
        if hang_up:  # the server has not stopped for a client that went away
            still_answers(server, path)

    fuzz()
    still_answers(server, path)


@pytest.mark.parametrize(("server", "path"), SERVED[:3])
def test_random_bytes_are_refused_naming_the_body(request, server, path) -> None:
    server = request.getfixturevalue(server)

    @FUZZ
    @given(raw=RAW, hang_up=st.booleans())
    def fuzz(raw: bytes, hang_up: bool) -> None:
        send(server, path, raw, hang_up)

    fuzz()
    still_answers(server, path)

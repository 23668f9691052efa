"""The OpenAI-compatible API's refusals name the field as the client wrote it: never "body"
for a field aiayn does not do, never pydantic's name for a branch of a union
("stop.constrained-str"), and the error of the branch the value took (a list's bad item, not
"not a text"); a list of bad items is refused at the first; a connection over the server's
bound is refused in OpenAI's error object on OpenAI's paths."""

import json
import socket
import time

import pytest
from pydantic import ValidationError

from aiayn.serve.bounds import Bounds
from aiayn.serve.openai_schema import CompletionRequest
from tests.serve.inprocess import call, engine, serving


@pytest.mark.parametrize(
    ("extra", "param", "said"),
    [
        ({"logprobs": 2}, "logprobs", "not supported"),
        ({"echo": True}, "echo", "not supported"),
        ({"stop": [""]}, "stop[0]", "at least 1 character"),
        ({"stop": ["ok", 5]}, "stop[1]", "valid string"),
        ({"stop": "x" * 101}, "stop", "at most 100 characters"),
        ({"stop": ["a"] * 17}, "stop", "at most 16 items"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream: true"),
        ({"prompt": [1, 2]}, "prompt[0]", "valid string"),
        ({"prompt": None}, "prompt", "valid string"),
    ],
)
def test_a_bad_field_is_named_as_the_client_wrote_it(lm_url, lm_run, extra, param, said) -> None:
    body = {"model": lm_run.resolve().name, "prompt": "to", "max_tokens": 1, **extra}
    status, answer = call(lm_url, "/v1/completions", body)
    assert (status, answer["error"]["param"]) == (422, param), answer
    assert (
        answer["error"]["message"].startswith(f"{param}: ") and said in answer["error"]["message"]
    )


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        ([{"type": "image_url"}], "messages[0].content[0].type"),
        ("\ud800", "messages[0].content"),
    ],
)
def test_a_bad_message_content_is_named_as_the_client_wrote_it(
    lm_url, lm_run, content, param
) -> None:
    body = {"model": lm_run.resolve().name, "messages": [{"role": "user", "content": content}]}
    status, answer = call(lm_url, "/v1/chat/completions", body)
    assert (status, answer["error"]["param"]) == (422, param), answer


def test_a_list_of_bad_items_is_refused_at_the_first() -> None:
    """300,000 bad stop strings or prompts: one error each (pydantic built 300,000, seconds
    of the event loop)."""
    for field in ("stop", "prompt"):
        body = {"model": "m", "prompt": "to", field: [1] * 300_000}
        with pytest.raises(ValidationError) as refused:
            CompletionRequest.model_validate(body)
        assert refused.value.error_count() <= 2  # the list's first item, and the text branch


def refused(url: str, path: str) -> tuple[int, dict]:
    """The answer to a request for `path` on a connection over the server's bound."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        answer = sock.makefile("rb")  # read to its Content-Length: the server closes later
        status = int(answer.readline().split()[1])
        head = dict(line.decode().lower().split(": ", 1) for line in iter(answer.readline, b"\r\n"))
        return status, json.loads(answer.read(int(head["content-length"])))


def test_a_connection_over_the_bound_is_refused_in_the_shape_of_its_path(lm_run) -> None:
    with serving(engine(lm_run), bounds=Bounds(max_connections=1)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))):
            time.sleep(0.1)  # the server has taken it: the one connection it allows
            status, body = refused(url, "/v1/chat/completions")
            assert status == 503 and body["error"]["code"] == "overloaded", body
            assert "1 connections open" in body["error"]["message"]
            status, body = refused(url, "/v1/generate")
            assert status == 503 and "1 connections open" in body["error"], body

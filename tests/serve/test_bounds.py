"""What a client can hold of a real server on 127.0.0.1: connections, time and memory. Uploads
that stall are cut off at the body's deadline, connections over the bound are refused, a good
request is answered meanwhile, and the memory the stalled bodies took is given back after."""

import json
import socket
import time

import pytest

from aiayn.cli import main
from aiayn.serve.client import Server
from tests.serve.test_untrusted import rss_kb

LIMIT, BODY_S, HEAD_S = 24, 1.5, 1.0
HEAD = (
    b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000000\r\n\r\n"
)
SENT = 900_000  # of the 1,000,000 bytes announced: the rest never comes


@pytest.fixture(scope="module")
def bounded(classifier_run):
    flags = ["--max-connections", str(LIMIT), "--body-timeout", str(BODY_S)]
    with Server(classifier_run, *flags, "--head-timeout", str(HEAD_S)) as server:
        for _ in range(5):  # the first requests grow the server's caches, once
            assert server.call("/v1/classify", {"text": ["a fine film"]})[0] == 200
        yield server


def port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def stall(server: Server) -> socket.socket:
    """A connection that announces a 1 MB body, sends 900 kB of it, and stops."""
    sock = socket.create_connection(("127.0.0.1", port(server)), timeout=10)
    sock.sendall(HEAD + b'{"text": ["' + b"a" * (SENT - 11))
    return sock


def answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the response on `sock`, which the server then closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def test_stalled_uploads_are_cut_off_extras_refused_and_memory_given_back(bounded) -> None:
    pid = bounded.process.pid
    before = rss_kb(pid)
    start = time.monotonic()
    stalled = [stall(bounded) for _ in range(LIMIT - 4)]
    # the server keeps answering while they hold their connections
    assert bounded.call("/v1/classify", {"text": ["a dull film"]})[0] == 200
    extras = []
    for _ in range(80):  # over the bound: refused before anything is read
        extras.append(stall(bounded))
    grown = rss_kb(pid) - before
    assert grown < (LIMIT * SENT) // 1000 + 20_000, f"{grown} kB for {LIMIT} connections"

    outcomes = [answer(sock) for sock in extras]
    refused = [body for status, body in outcomes if status == 503]
    assert len(refused) >= 80 - 4, outcomes
    assert f"{LIMIT} connections open" in refused[0]["error"]
    for sock in stalled:
        status, body = answer(sock)  # blocks until the server answers and closes
        assert (status, body["field"]) == (408, "body"), body
        assert f"within {BODY_S:g} s" in body["error"]
    waited = time.monotonic() - start
    assert BODY_S <= waited < BODY_S + 5, waited
    for sock in stalled + extras:
        sock.close()

    time.sleep(2)  # the server gives back freed memory a second after connections close
    assert bounded.call("/v1/classify", {"text": ["a dull film"]})[0] == 200
    kept = rss_kb(pid) - before
    assert kept < 10_000, f"the server kept {kept} kB after the connections closed"


def test_a_request_head_that_never_ends_is_dropped_at_its_deadline(bounded) -> None:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(bounded)), timeout=10) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        assert sock.recv(1024) == b""  # closed
    assert HEAD_S <= time.monotonic() - start < HEAD_S + 3
    assert bounded.call("/health") == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-connections", "0", "--max-connections 0 must be in [1, 65,536]"),
        ("--max-connections", "9" * 20, "must be in [1, 65,536]"),  # no bound at all
        ("--body-timeout", "nan", "--body-timeout nan must be in (0, 3600]"),
        ("--head-timeout", "0", "--head-timeout 0.0 must be in (0, 3600]"),
    ],
)
def test_bad_bounds_are_one_line_errors(classifier_run, capsys, flag, value, message) -> None:
    assert main(["serve", "--model", str(classifier_run), flag, value]) == 2
    assert message in capsys.readouterr().err


def test_a_body_of_many_errors_costs_one_error(bounded) -> None:
    """pydantic made an error object for each bad item or unknown field: 370 MB for one 1 MB
    body of 333,000 `{}`s."""
    many_fields = {"text": ["a"], **{f"{i}": 0 for i in range(90_000)}}
    bodies = [
        (b'{"text": [' + b"{}," * 333_000 + b"{}]}", "text[0]"),
        (json.dumps(many_fields, separators=(",", ":")).encode(), "0"),
    ]
    before = rss_kb(bounded.process.pid)
    for raw, field in bodies:
        status, answer = bounded.call("/v1/classify", raw=raw)
        assert (status, answer["field"]) == (422, field), answer
    grown = rss_kb(bounded.process.pid) - before
    assert grown < 40_000, f"the server grew by {grown} kB"

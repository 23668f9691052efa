"""A server in this process (a thread running uvicorn on a free port of 127.0.0.1), for tests
that change its engine or its bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from aiayn.serve.app import create_app
from aiayn.serve.batcher import Batcher
from aiayn.serve.bounds import Bounds
from aiayn.serve.client import Client
from aiayn.serve.engines import Engine, LanguageEngine
from aiayn.serve.server import bind, make_server


@contextmanager
def serving(
    engine: Engine,
    batcher: Batcher | None = None,
    bounds: Bounds | None = None,
    grace_s: float | None = None,
) -> Iterator[str]:
    """The server's URL while it runs; it stops on leaving (a graceful stop, which cancels
    the requests still in flight after `grace_s`, when given)."""
    bounds = bounds or Bounds()
    server = make_server(create_app(engine, batcher or Batcher(), bounds), bounds)
    if grace_s is not None:
        server.config.timeout_graceful_shutdown = grace_s
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)


def engine(run: Path) -> LanguageEngine:
    """The language model of `run`, on the CPU."""
    return LanguageEngine.load(run, None, torch.device("cpu"), lambda _: None)


def call(url: str, path: str, body: object = None) -> tuple[int, object]:
    client = Client(url, timeout=60)
    try:
        return client.call(path, body)
    finally:
        client.close()

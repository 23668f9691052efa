"""`aiayn serve`: a run directory's model behind uvicorn, on a socket bound before it starts.

SIGTERM and Ctrl-C stop it gracefully: it stops accepting connections, answers every request
already received (the batcher finishes its queue), then returns, and the command exits 0.
What a client can hold of it (connections, time, memory) is bounded: aiayn.serve.bounds.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Callable
from functools import partial

import torch
import uvicorn
from fastapi import FastAPI

from aiayn.serve import MAX_ROWS, TIME_LIMIT_S
from aiayn.serve.app import create_app
from aiayn.serve.batcher import Batcher
from aiayn.serve.bounds import BoundedH11, Bounds, Trim
from aiayn.serve.engines import load_engine

GRACE_S = 120  # how long a stop waits for the requests in flight
KEEP_ALIVE_S = 5  # how long an idle connection stays open


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one, which the log line names)."""
    if not 0 <= port < 65536:
        raise ValueError(f"--port {port} must be in [0, 65535]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(1024)  # connections wait in the backlog until the server's loop accepts them
    return sock


def serve(
    model_dir: str,
    host: str,
    port: int,
    device: torch.device,
    weights: str | None,
    log: Callable[[str], None],
    max_queue: int = 64,
    window_ms: float = 5.0,
    bounds: Bounds | None = None,
    max_rows: int = MAX_ROWS,
    time_limit_s: float = TIME_LIMIT_S,
    graph: bool = False,
) -> None:
    bounds = bounds or Bounds()
    engine = load_engine(model_dir, weights, device, log)
    if graph:  # one worker thread decodes, so no other CUDA work runs beside a capture
        engine.use_cuda_graph()
    sock = bind(host, port)
    if not is_loopback(host):
        log(f"warning: listening on {host}, beyond this machine: the API has no authentication")
    batcher = Batcher(max_queue, window_ms / 1000)
    server = make_server(create_app(engine, batcher, bounds, max_rows, time_limit_s), bounds)
    # uvicorn catches the stop signals while it runs, then raises them again against the
    # handlers it found; these make that a no-op, so that a graceful stop exits 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    name, bound = sock.getsockname()[:2]
    shown = f"[{name}]" if ":" in name else name
    log(f"serving the {engine.family} model of {model_dir} at http://{shown}:{bound}/")
    server.run(sockets=[sock])
    log("stopped: every request received was answered")


def make_server(app: FastAPI, bounds: Bounds) -> uvicorn.Server:
    """uvicorn serving `app` over HTTP/1.1 within `bounds`."""
    config = uvicorn.Config(
        app,
        http=partial(BoundedH11, bounds=bounds, trim=Trim()),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACE_S,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return uvicorn.Server(config)

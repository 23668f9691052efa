"""What one client can hold of the server: connections, time and memory.

- At most `max_connections` connections are open at once; one more is answered 503 (JSON,
  Retry-After; OpenAI's error object on its paths) and closed, once its request line has
  arrived (at most 8 KiB of it is kept, the rest discarded) or a second has passed without.
- A request's head must arrive within `head_timeout_s` of the connection opening or of the
  previous response; the connection is closed otherwise. (h11 bounds a head to 16 KiB.)
- Its body must arrive whole within `body_timeout_s` of its head (408, then the connection is
  closed: aiayn.serve.guard), and is read to at most `max_body` bytes (413).

So a body in memory is at most `max_connections` x `max_body` bytes. Once connections close,
the memory their bodies took is given back to the system: glibc's malloc would otherwise keep
the freed buffers in its heap, and the server's size would stay at its peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from aiayn.serve import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_CONNECTIONS
from aiayn.serve.openai import PATHS, error_body
from aiayn.serve.schema import MAX_BODY

# each connection holds a file descriptor and up to a body's bytes: past this, no bound at all
MAX_MAX_CONNECTIONS = 65_536
LINGER_S = 2.0  # how long a refused connection is read (and discarded) so that its 503 arrives
# a refused connection's request line (its path: which API's error shape) waited for this long
REQUEST_LINE_S, MAX_REQUEST_LINE = 1.0, 8192
TRIM_AFTER_S = 1.0  # memory is given back at most once a second, after connections close


@dataclass(frozen=True)
class Bounds:
    max_connections: int = MAX_CONNECTIONS
    head_timeout_s: float = HEAD_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    max_body: int = MAX_BODY

    def __post_init__(self) -> None:
        if not 1 <= self.max_connections <= MAX_MAX_CONNECTIONS:
            raise ValueError(
                f"--max-connections {self.max_connections} must be in [1, {MAX_MAX_CONNECTIONS:,}]"
            )
        for flag, seconds in (
            ("--head-timeout", self.head_timeout_s),
            ("--body-timeout", self.body_timeout_s),
        ):
            if not 0 < seconds <= 3600:  # NaN too
                raise ValueError(f"{flag} {seconds} must be in (0, 3600] seconds")


def raw_response(status: str, body: dict[str, Any], *headers: str) -> bytes:
    """A whole HTTP/1.1 response that closes its connection, for a connection h11 has no
    request on."""
    data = json.dumps(body).encode()
    head = [
        f"HTTP/1.1 {status}",
        "content-type: application/json",
        f"content-length: {len(data)}",
        "connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


class Trim:
    """Gives the heap's free memory back to the system (glibc's malloc_trim), at most once
    every TRIM_AFTER_S; a no-op where the C library has no malloc_trim."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        except OSError:
            libc = None
        self.trim = getattr(libc, "malloc_trim", None)
        self.pending: asyncio.TimerHandle | None = None

    def soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.trim is not None and self.pending is None:
            self.pending = loop.call_later(TRIM_AFTER_S, self._now)

    def _now(self) -> None:
        self.pending = None
        self.trim(0)


class BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1 connection, with the bound on connections and the head's deadline."""

    def __init__(self, *args: Any, bounds: Bounds, trim: Trim, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds, self.trim = bounds, trim
        self.deadline: asyncio.TimerHandle | None = None
        self.refused = False
        self.request_line: bytes | None = None  # a refused connection's, until answered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            self.refuse()
        else:
            self.await_head()

    def refuse(self) -> None:
        """Answer 503 once the request line names the path (OpenAI's error object on its
        paths), or after REQUEST_LINE_S without one; close LINGER_S later."""
        self.refused, self.request_line = True, b""
        self.loop.call_later(REQUEST_LINE_S, self.answer_refusal)

    def answer_refusal(self) -> None:
        if self.request_line is None or self.transport.is_closing():
            return
        path = (self.request_line.split(b" ")[1:2] or [b""])[0].decode("latin-1")
        self.request_line = None
        message = f"the server has {self.bounds.max_connections} connections open, its limit"
        message += "; retry shortly"
        body = error_body(503, message, None) if path.startswith(PATHS) else {"error": message}
        self.transport.write(raw_response("503 Service Unavailable", body, "retry-after: 1"))
        # closed a little later: a client still sending would be reset, and lose the answer
        self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)
        elif self.request_line is not None:  # read up to its first line; the rest discarded
            self.request_line = (self.request_line + data)[:MAX_REQUEST_LINE]
            if b"\n" in self.request_line or len(self.request_line) == MAX_REQUEST_LINE:
                self.answer_refusal()

    def await_head(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(self.bounds.head_timeout_s, self.head_late)

    def head_late(self) -> None:
        """No request in progress `head_timeout_s` after the last: the next one's head is late
        (or the client is still sending a body the server refused)."""
        self.deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)
        self.trim.soon(self.loop)

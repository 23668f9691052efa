"""ASGI middleware in front of every route: the body's size limit and deadline, a body that is
no text at all, and a count of the requests being answered (the server's /v1/stats; tests wait
on it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiayn.serve.bounds import Bounds
from aiayn.serve.openai import PATHS, error_body

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[dict, Receive, Send], Awaitable[None]]


class Traffic:
    """The requests in flight now."""

    def __init__(self) -> None:
        self.in_flight = 0


class Guard:
    """Answers 413 to a body over the limit, by its Content-Length or, when that is absent
    (a chunked upload) or false, as soon as more bytes than the limit have arrived; and 408,
    closing the connection, to a body not received whole within the body's deadline. The
    body is read whole (at most the limit) before the route sees it."""

    def __init__(self, app: ASGI, traffic: Traffic, bounds: Bounds) -> None:
        self.app, self.traffic = app, traffic
        self.limit, self.timeout_s = bounds.max_body, bounds.body_timeout_s

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        fail = partial(reject, send, openai=scope.get("path", "").startswith(PATHS))
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            shown = length.decode(errors="replace")[:20]
            return await fail(f"the body is {shown} bytes; the limit is {self.limit:,}")
        self.traffic.in_flight += 1
        try:
            try:
                async with asyncio.timeout(self.timeout_s):
                    body = await read_body(receive, self.limit)
            except TimeoutError:
                message = f"body: not received whole within {self.timeout_s:g} s"
                return await fail(message, 408, "body", close=True)
            if body is TOO_LARGE:
                await fail(f"the body is over the limit of {self.limit:,} bytes")
            elif body is not None and not utf8(body):  # FastAPI's answer would be a bare 400
                await fail("body: not UTF-8 text, as JSON must be", 422, "body")
            elif body is not None:  # None: the client went away
                await self.route(scope, body, receive, send)
        finally:
            self.traffic.in_flight -= 1

    async def route(self, scope: dict, body: bytes, receive: Receive, send: Send) -> None:
        """The app's answer. A request cancelled before its answer started (a stop's timeout
        ran out) is answered 503 in JSON, not uvicorn's plain-text 500 and a traceback."""
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(as_json(scope), replay(body, receive), tracked)
        except asyncio.CancelledError:
            if started:
                raise
            message = "the server is stopping and did not answer this request; retry it"
            fail = partial(reject, send, openai=scope.get("path", "").startswith(PATHS))
            await fail(message, 503, None, close=True)


TOO_LARGE = b"<too large>"


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body; TOO_LARGE past `limit` bytes; None if the client disconnects."""
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > limit:
            return TOO_LARGE
        more = message.get("more_body", False)
    return b"".join(parts)


def as_json(scope: dict) -> dict:
    """Every body is read as JSON, the API's only format, whatever Content-Type says (curl's
    -d sends a form type; were it believed, a valid request would fail as "not an object")."""
    if scope.get("method") != "POST":
        return scope
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the client's own messages (a disconnect, say)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def reject(
    send: Send,
    message: str,
    status: int = 413,
    field: str | None = "body",
    close: bool = False,
    openai: bool = False,
) -> None:
    """Answer `status` with the error in the API's JSON (OpenAI's error object on its routes)."""
    if openai:
        fields = error_body(status, message, field)
    else:
        fields = {"error": message} if field is None else {"error": message, "field": field}
    body = json.dumps(fields).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:  # the rest of the body is not waited for
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

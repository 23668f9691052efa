"""ASGI middleware in front of every route: the body size limit, a body that is no text at all,
and a count of the requests being answered (the server's /v1/stats; tests wait on it)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiayn.serve.schema import MAX_BODY

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[dict, Receive, Send], Awaitable[None]]


class Traffic:
    """The requests in flight now."""

    def __init__(self) -> None:
        self.in_flight = 0


class Guard:
    """Answers 413 to a body over `limit` bytes, by its Content-Length or, when that is absent
    (a chunked upload) or false, as soon as more bytes than the limit have arrived. The body
    is read whole (at most `limit` bytes) before the route sees it."""

    def __init__(self, app: ASGI, traffic: Traffic, limit: int = MAX_BODY) -> None:
        self.app, self.traffic, self.limit = app, traffic, limit

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            shown = length.decode(errors="replace")[:20]
            return await reject(send, f"the body is {shown} bytes; the limit is {self.limit:,}")
        self.traffic.in_flight += 1
        try:
            body = await read_body(receive, self.limit)
            if body is TOO_LARGE:
                await reject(send, f"the body is over the limit of {self.limit:,} bytes")
            elif body is not None and not utf8(body):  # FastAPI's answer would be a bare 400
                await reject(send, "body: not UTF-8 text, as JSON must be", 422, "body")
            elif body is not None:  # None: the client went away
                await self.app(as_json(scope), replay(body, receive), send)
        finally:
            self.traffic.in_flight -= 1


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


async def reject(send: Send, message: str, status: int = 413, field: str | None = None) -> None:
    fields = {"error": message} if field is None else {"error": message, "field": field}
    body = json.dumps(fields).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""The OpenAI-compatible API of a language model: GET /v1/models, POST /v1/completions and
POST /v1/chat/completions, answered as OpenAI answers them, streamed as OpenAI's server-sent
chunks ending in `data: [DONE]`. Generation runs with continuous batching
(aiayn.serve.scheduler); each choice is a sequence of its own.

Errors are OpenAI's object, {"error": {"message", "type", "param", "code"}}, with the status
codes of the JSON API (aiayn.serve.app).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import StarletteHTTPException
from fastapi.responses import StreamingResponse

from aiayn.decode.continuous import Sampling
from aiayn.serve.engines import LanguageEngine
from aiayn.serve.openai_schema import COMPLETION_TOKENS, ChatRequest, CompletionRequest
from aiayn.serve.scheduler import Finished, Scheduler, Ticket
from aiayn.serve.schema import InputError, NotServed, TooLarge

PATHS = ("/v1/models", "/v1/completions", "/v1/chat/completions")
WATCH_S = 0.25  # how often a request waiting for its text asks whether its client is there


def error_body(status: int, message: str, param: str | None) -> dict[str, Any]:
    """OpenAI's error object for a failure of `status`."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = {404: "model_not_found" if param == "model" else "not_found", 503: "overloaded"}
    return {"error": {"message": message, "type": kind, "param": param, "code": code.get(status)}}


def add_openai(app: FastAPI, engine: Any, scheduler: Callable[[], Scheduler]) -> None:
    """The routes; each is 404 for a model that is not a language model."""

    def lm() -> LanguageEngine:
        if not isinstance(engine, LanguageEngine):
            raise StarletteHTTPException(
                404, f"the OpenAI API is for decoder_only models; this one is {engine.family}"
            )
        return engine

    def card() -> dict[str, Any]:
        return {"id": lm().model_id, "object": "model", "created": 0, "owned_by": "aiayn"}

    def served(name: str) -> LanguageEngine:
        e = lm()
        if name != e.model_id:
            raise NotServed("model", f"model: {name!r} is not served here; this is {e.model_id!r}")
        return e

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{name}")
    async def model_card(name: str) -> dict[str, Any]:
        served(name)
        return card()

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> Any:
        e = served(req.model)
        req.check()
        prompts = [e.prompt_ids(p, f"prompt[{i}]") for i, p in enumerate(req.prompts)]
        return await answer(request, scheduler(), req, prompts, req.max_tokens, Completion())

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> Any:
        e = served(req.model)
        req.check()
        if e.chat is None:
            raise InputError(
                "messages",
                "messages: this model has no chat template; send the prompt as text to "
                "/v1/completions",
            )
        try:
            # off the event loop: a template is code, and may take its time
            ids = await asyncio.to_thread(e.chat.prompt_ids, [m.plain() for m in req.messages])
        except ValueError as err:  # the template failed or was refused; a special token's name
            message = str(err) if str(err).startswith("messages") else f"messages: {err}"
            raise InputError("messages", message) from None
        if not ids:
            raise InputError("messages", "messages: the chat template gave no tokens")
        limit = req.limit(e.cfg.model.max_len)
        return await answer(request, scheduler(), req, [ids], limit, Chat())


class Completion:
    """/v1/completions' answer and chunks."""

    kind, prefix = "text_completion", "cmpl"

    def choice(self, index: int, text: str, finish: str | None, first: bool) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

    def whole(self, index: int, text: str, finish: str) -> dict[str, Any]:
        return self.choice(index, text, finish, False)


class Chat:
    """/v1/chat/completions' answer and chunks."""

    kind, prefix = "chat.completion", "chatcmpl"

    def choice(self, index: int, text: str, finish: str | None, first: bool) -> dict[str, Any]:
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        if not first and not text:
            delta = {}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def whole(self, index: int, text: str, finish: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


async def answer(
    request: Request,
    scheduler: Scheduler,
    req: CompletionRequest | ChatRequest,
    prompts: list[list[int]],
    max_tokens: int | None,
    shape: Completion | Chat,
) -> dict[str, Any] | StreamingResponse:
    """Generate `req.n` choices for each prompt: the whole answer, or its stream."""
    if (count := len(prompts) * req.n) > (room := scheduler.waiting.maxsize):
        field = "n" if len(prompts) == 1 else "prompt"
        message = f"{field}: {count} sequences (prompts x n); the server queues {room} at most"
        raise TooLarge(field, message)
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()
    tickets = []
    for i, ids in enumerate(p for p in prompts for _ in range(req.n)):
        seed = None if req.seed is None else (req.seed + i) % 2**64
        sampling = Sampling(
            max_tokens or COMPLETION_TOKENS, req.temperature, req.top_k, req.top_p, seed, req.stops
        )

        def emit(piece: str | None, i: int = i) -> None:  # None: the choice has ended
            loop.call_soon_threadsafe(pieces.put_nowait, (i, piece))

        ticket = Ticket(ids, sampling, emit if req.stream else lambda _: None)
        if req.stream:  # after its last piece: the worker calls both in this order
            ticket.future.add_done_callback(lambda _, emit=emit: emit(None))
        tickets.append(ticket)
    scheduler.submit(tickets)  # Busy: a 503
    head = {"id": f"{shape.prefix}-{uuid.uuid4().hex}", "created": int(time.time())}
    head["model"] = req.model
    prompt_tokens = sum(map(len, prompts))
    if req.stream:
        usage = req.stream_options is not None and req.stream_options.include_usage
        chunks = stream(tickets, pieces, shape, head, prompt_tokens if usage else None)
        return StreamingResponse(chunks, media_type="text/event-stream")
    done = await wait(tickets, request)
    return {
        **head,
        "object": shape.kind,
        "choices": [shape.whole(i, d.text, d.finish_reason) for i, d in enumerate(done)],
        "usage": usage_of(prompt_tokens, done),
    }


def usage_of(prompt_tokens: int, done: list[Finished]) -> dict[str, int]:
    completion = sum(d.tokens for d in done)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


async def wait(tickets: list[Ticket], request: Request) -> list[Finished]:
    """Every ticket's result; a client that goes away cancels them all at the next step."""
    futures = [asyncio.wrap_future(t.future) for t in tickets]
    try:
        while not all(f.done() for f in futures):
            await asyncio.wait(futures, timeout=WATCH_S)
            if await request.is_disconnected():  # they end at the next step
                for t in tickets:
                    t.cancelled.set()
        return [f.result() for f in futures]
    finally:
        for t in tickets:
            t.cancelled.set()


async def stream(
    tickets: list[Ticket],
    pieces: asyncio.Queue,
    shape: Completion | Chat,
    head: dict[str, Any],
    prompt_tokens: int | None,
) -> AsyncIterator[str]:
    """OpenAI's chunks: each piece of each choice's text as it comes, then each choice's
    finish_reason, the usage when asked for, and [DONE]. A client that goes away cancels
    every choice at the next step."""
    chunk = {**head, "object": f"{shape.kind}.chunk"}
    started: set[int] = set()
    done: list[Finished] = []
    try:
        while len(done) < len(tickets):
            i, piece = await pieces.get()
            if piece is not None:
                yield event({**chunk, "choices": [shape.choice(i, piece, None, i not in started)]})
            elif (failure := tickets[i].future.exception()) is not None:
                yield event(error_body(500, f"the server failed: {failure}", None))
                break
            else:
                done.append(result := tickets[i].future.result())
                ended = shape.choice(i, "", result.finish_reason, i not in started)
                yield event({**chunk, "choices": [ended]})
            started.add(i)
        else:
            if prompt_tokens is not None:
                yield event({**chunk, "choices": [], "usage": usage_of(prompt_tokens, done)})
        yield "data: [DONE]\n\n"
    finally:
        for t in tickets:
            t.cancelled.set()


def event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"

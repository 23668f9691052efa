"""The HTTP API (FastAPI): one route per kind of request, every error as JSON.

Errors: {"error": what was wrong, "field": the request field, where one is to blame}; 400 for
a body that cannot be parsed, 408 for one not received in time, 413 for a request over a size
limit, 422 for a bad value, 404 for an endpoint the model's family does not have, 503 (with
Retry-After) when the queue or the server's connections are full, 500 for a failure of the
server's own. Every request is checked whole before it is queued.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, StarletteHTTPException
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from aiayn.families import family
from aiayn.serve import openai
from aiayn.serve.batcher import Batcher, Busy, Job
from aiayn.serve.bounds import Bounds
from aiayn.serve.engines import ClassifierEngine, Engine, LanguageEngine, TranslationEngine
from aiayn.serve.guard import Guard, Traffic
from aiayn.serve.scheduler import MAX_ROWS, TIME_LIMIT_S, Scheduler
from aiayn.serve.schema import (
    AttentionRequest,
    ClassifyRequest,
    GenerateRequest,
    InputError,
    TagRequest,
    TooLarge,
    TranslateRequest,
)
from aiayn.serve.tagging import TaggerEngine

STATIC = files("aiayn.serve") / "static"


def error(
    req: Request, status: int, message: str, field: str | None = None, **headers: str
) -> JSONResponse:
    """The error in the API's JSON, or in OpenAI's error object on its routes."""
    if req.url.path.startswith(openai.PATHS):
        body = openai.error_body(status, message, field)
    else:
        body = {"error": message} if field is None else {"error": message, "field": field}
    return JSONResponse(body, status_code=status, headers=headers or None)


def first_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error to report: the first; where its field may be of several types (a text or a
    list of texts), the error of the type the value is (a list's length rather than "not a
    text"), of the deepest into it (a list's bad item)."""
    field = tuple(errors[0].get("loc", ()))[:2]
    same = [e for e in errors if tuple(e.get("loc", ()))[:2] == field]

    def fit(e: dict[str, Any]) -> tuple[bool, int]:  # "string_type": not of that type at all
        return not str(e.get("type", "")).endswith("_type"), len(e.get("loc", ()))

    return max(same, key=fit)  # the first of the best


# how pydantic names a branch of a union in an error's place ("str", "list[constrained-str]")
UNION_BRANCH = re.compile(r"[a-z-]*(str|int|float|bool|none)|.*\[.*\]")


def field_name(loc: tuple, kind: str = "") -> str:
    """("body", "text", 3) -> "text[3]"; the body itself -> "body"; ("body", "stop",
    "list[str]", 0) -> "stop[0]" (but for an unknown field, named by the client)."""
    last = len(loc) - 1 if kind == "extra_forbidden" else len(loc)
    parts = [
        p for i, p in enumerate(loc)
        if p != "body" and (i == last or not UNION_BRANCH.fullmatch(str(p)))
    ] or ["body"]  # fmt: skip
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def create_app(
    engine: Engine,
    batcher: Batcher,
    bounds: Bounds | None = None,
    max_rows: int = MAX_ROWS,
    time_limit_s: float = TIME_LIMIT_S,
) -> FastAPI:
    """The API of `engine`; generations of the OpenAI API are batched continuously, up to
    `max_rows` sequences at once, each for at most `time_limit_s`."""
    generating: list[Scheduler] = []  # made at the first generation

    def scheduler() -> Scheduler:
        if not generating:
            limits = batcher.jobs.maxsize, max_rows, time_limit_s
            generating.append(Scheduler(engine.model, engine.tok, engine.lock, *limits))
        return generating[0]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(batcher.close)  # after the last request has been answered
        for s in generating:
            await asyncio.to_thread(s.close)

    app = FastAPI(
        title="aiayn",
        summary=f"a Transformer ({engine.family}) served from its run directory",
        lifespan=lifespan,
    )
    traffic = Traffic()
    app.add_middleware(Guard, traffic=traffic, bounds=bounds or Bounds())
    add_errors(app)

    async def run(job: Job) -> list[Any]:
        return await asyncio.wrap_future(batcher.submit(job))

    def need(kind: type[Engine], endpoint: str) -> Any:
        if not isinstance(engine, kind):
            raise StarletteHTTPException(
                404,
                f"/v1/{endpoint} is for {kind.family} models; this server's model is "
                f"{engine.family} (its endpoint: /v1/{family(engine.family).endpoint})",
            )
        return engine

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        return engine.info()

    @app.get("/v1/stats")
    async def stats() -> dict[str, int]:
        """Requests being answered now, and what the batcher has done."""
        extra = generating[0].stats() if generating else {}
        return {"in_flight": traffic.in_flight, **batcher.stats(), **extra}

    @app.post("/v1/translate")
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        e: TranslationEngine = need(TranslationEngine, "translate")
        req.check()
        beam = e.cfg.decode.beam if req.beam is None else req.beam
        alpha = e.cfg.decode.alpha if req.alpha is None else req.alpha
        if req.n_best > beam:
            raise InputError("n_best", f"n_best: {req.n_best} is more than the beam ({beam})")
        return {"translations": await run(e.translate_job(req.text, beam, alpha, req.n_best))}

    @app.post("/v1/classify")
    async def classify(req: ClassifyRequest) -> dict[str, Any]:
        e: ClassifierEngine = need(ClassifierEngine, "classify")
        req.check()
        return {"labels": await run(e.classify_job(req.text))}

    @app.post("/v1/tag")
    async def tag(req: TagRequest) -> dict[str, Any]:
        e: TaggerEngine = need(TaggerEngine, "tag")
        req.check()
        return {"sentences": await run(e.tag_job(req.text))}

    @app.post("/v1/generate", response_model=None)
    async def generate(req: GenerateRequest) -> dict[str, Any] | StreamingResponse:
        e: LanguageEngine = need(LanguageEngine, "generate")
        req.check()
        options = req.model_dump(exclude={"prompt", "stream"})
        if not req.stream:
            stop = threading.Event()
            try:
                [text] = await run(e.generate_job(req.prompt, options, lambda _: None, stop))
            finally:
                stop.set()  # a cancelled request ends its sampling at the next token
            return {"text": text}
        return stream_events(e, req.prompt, options, batcher)

    @app.post("/v1/attention")
    async def attention(req: AttentionRequest) -> dict[str, Any]:
        req.check()
        if req.target is not None and not isinstance(engine, TranslationEngine):
            raise InputError(
                "target", f"target: only a translation model reads one, not a {engine.family}"
            )
        [maps] = await run(engine.attention_job(req.text, req.target))
        return maps

    @app.get("/", include_in_schema=False)
    async def explorer() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    openai.add_openai(app, engine, scheduler)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def stream_events(
    engine: LanguageEngine, prompt: str, options: dict[str, Any], batcher: Batcher
) -> StreamingResponse:
    """Server-sent events: one {"text", "p"} per token, then `done` with the whole text (or
    `error`). A client that goes away stops the sampling at its next token."""
    loop, events, stop = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
    done = object()

    def send(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    future = batcher.submit(engine.generate_job(prompt, options, send, stop))  # Busy: a 503
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, done))

    async def lines() -> AsyncIterator[str]:
        try:
            while (event := await events.get()) is not done:
                yield f"data: {json.dumps(event)}\n\n"
            if (failure := future.exception()) is not None:
                yield f"event: error\ndata: {json.dumps({'error': str(failure)})}\n\n"
            else:
                yield f"event: done\ndata: {json.dumps({'text': future.result()[0]})}\n\n"
        finally:
            stop.set()

    return StreamingResponse(lines(), media_type="text/event-stream")


def add_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(req: Request, exc: RequestValidationError) -> JSONResponse:
        first = first_error(exc.errors())
        if first.get("type") == "json_invalid":
            where = first.get("loc", ("body", "?"))[-1]
            return error(req, 422, f"body: not valid JSON (at character {where})", "body")
        field = field_name(tuple(first.get("loc", ())), first.get("type", ""))
        # a check of the schema's own: its message, without pydantic's "Value error, "
        cause = first.get("ctx", {}).get("error") if first.get("type") == "value_error" else None
        if isinstance(cause, InputError):  # a check of the whole request, naming its field
            return error(req, 422, str(cause), cause.field)
        return error(req, 422, f"{field}: {cause or first.get('msg', 'invalid')}", field)

    @app.exception_handler(InputError)
    async def bad_input(req: Request, exc: InputError) -> JSONResponse:
        return error(req, exc.status, str(exc), exc.field)

    @app.exception_handler(TooLarge)
    async def too_large(req: Request, exc: TooLarge) -> JSONResponse:
        return error(req, 413, str(exc), exc.field)

    @app.exception_handler(Busy)
    async def busy(req: Request, exc: Busy) -> JSONResponse:
        return error(req, 503, f"{exc}; retry shortly", **{"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's: a body its parser gave up on (nested too deeply)
            return error(req, 400, f"body: {exc.detail}", "body")
        return error(req, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failed(req: Request, exc: Exception) -> JSONResponse:
        return error(req, 500, f"the server failed: {type(exc).__name__}: {exc}")

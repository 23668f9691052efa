"""The OpenAI-compatible API's requests (/v1/completions, /v1/chat/completions), checked as
the JSON API's are (aiayn.serve.schema: strict types, every value in range before anything
runs). A field OpenAI defines that aiayn does not do is refused by name (422) unless it asks
for nothing (`logprobs: false`, `presence_penalty: 0`, ...), never silently ignored; so is any
field OpenAI does not define, but for `top_k`, as vLLM takes it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiayn.serve.schema import (
    MAX_STOPS,
    MAX_TEXTS,
    InputError,
    Request,
    StopString,
    check_one,
    check_texts,
    greedy_or_not_tiny,
)

MAX_CHOICES = 16  # n
MAX_MESSAGES = 256
MAX_TOKENS = 4096
COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions
# a list's validation stops at its first bad item (see aiayn.serve.schema)
StopStrings = Annotated[list[StopString], Field(max_length=MAX_STOPS, fail_fast=True)]

# OpenAI's fields that aiayn does not do, each with the value that asks for nothing
NEUTRAL: dict[str, tuple[object, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None,),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "parallel_tool_calls": (None, False),
    "response_format": (None, {"type": "text"}),
    "store": (None, False),
    "metadata": (None, {}),
    "service_tier": (None, "auto", "default"),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "audio": (None,),
    "reasoning_effort": (None,),
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    include_usage: bool = False


class OpenAIRequest(Request):
    """What both endpoints take."""

    model: str = Field(max_length=1000, description="the served model's id (GET /v1/models)")
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    top_k: int = Field(0, ge=0, description="vLLM's: sample from the k likeliest tokens")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices; choice i samples with seed + i")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopString | StopStrings | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    user: str | None = Field(None, max_length=1000, description="recorded nowhere")

    _temperature = field_validator("temperature")(greedy_or_not_tiny)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: object) -> object:
        """An OpenAI field aiayn does not do, refused by name unless it asks for nothing."""
        if isinstance(data, dict):
            for name, value in data.items():
                if name in NEUTRAL and not any(_same(value, ok) for ok in NEUTRAL[name]):
                    raise InputError(name, f"{name}: not supported by this server (give it out)")
            return {k: v for k, v in data.items() if k not in NEUTRAL}
        return data

    @property
    def stops(self) -> tuple[str, ...]:
        stop = self.stop
        return () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)

    def check(self) -> None:
        """Every text's size (413) and that it is text (422), as `Request.check`; options
        that would be ignored (422)."""
        for name in ("prompt", "stop"):
            value = getattr(self, name, None)
            check_texts([value] if isinstance(value, str) else value or [], name)
        if self.stream_options is not None and not self.stream:
            raise InputError("stream_options", "stream_options: only with stream: true")


def _same(value: object, neutral: object) -> bool:
    """`value` is `neutral`, of its type (False is not 0)."""
    return type(value) is type(neutral) and value == neutral


class CompletionRequest(OpenAIRequest):
    prompt: str | Annotated[list[str], Field(fail_fast=True)] = Field(
        description=f"a text, or a list of at most {MAX_TEXTS}"
    )
    max_tokens: int | None = Field(COMPLETION_TOKENS, ge=1, le=MAX_TOKENS)

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    def check(self) -> None:
        super().check()
        if isinstance(self.prompt, list) and not self.prompt:
            raise InputError("prompt", "prompt: an empty list; give at least one text")


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(max_length=MAX_TEXTS, fail_fast=True)]
    name: str | None = Field(None, max_length=100)

    @property
    def text(self) -> str:
        """The content as one text (text parts joined by newlines, as vLLM joins them)."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content)

    def plain(self) -> dict[str, Any]:
        """The message as the template sees it: plain JSON values."""
        out = {"role": self.role, "content": self.text}
        return out if self.name is None else {**out, "name": self.name}


class ChatRequest(OpenAIRequest):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES, fail_fast=True)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)

    def check(self) -> None:
        super().check()
        for i, m in enumerate(self.messages):
            check_one(m.text, f"messages[{i}].content")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise InputError("max_tokens", "max_tokens: give it or max_completion_tokens, not both")

    def limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

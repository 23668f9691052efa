"""The JSON API's requests: every value checked before anything runs (422 names the field),
and the size limits of a request (413 names the field and the limit).

Types are strict ("5" is not a beam size) and unknown fields are refused, so that a misspelt
option is an error rather than silently the default. Ranges are those the decoder can keep:
a value that passes here must never fail later, where a failure could reach other requests.
Validation stops at the first error: pydantic would otherwise build one error for each bad
item of a list or each unknown field, and a 1 MB body of them took 370 MB and 4 s of the
event loop.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiayn.decode.text import MAX_TEMPERATURE, MIN_TEMPERATURE
from aiayn.decodeconfig import MAX_ALPHA, MAX_BEAM
from aiayn.safeio import check_text

MAX_BODY = 1_000_000  # bytes
MAX_TEXTS = 256  # texts in one request
MAX_CHARS = 10_000  # characters in one text
# each stop string is looked for again after every token, all its prefixes included: its cost
# grows with the square of its length
MAX_STOP_CHARS = 100
MAX_STOPS = 16


class TooLarge(Exception):
    """A request over a size limit (413, naming `field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InputError(ValueError):
    """A request that names a value the model cannot take (422, naming `field`)."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def greedy_or_not_tiny(temperature: float) -> float:
    """A temperature the sampler can divide by, or 0 (greedy)."""
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"{temperature!r} is below {MIN_TEMPERATURE}; give 0 for the greedy choice"
        )
    return temperature


class NotServed(InputError):
    """A request for a model this server does not serve (404)."""

    status = 404


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _first_unknown_field(cls, data: object) -> object:
        """Only the first unknown field goes on to be refused (by extra="forbid")."""
        if isinstance(data, dict):
            unknown = next((k for k in data if k not in cls.model_fields), None)
            if unknown is not None:
                return {k: v for k, v in data.items() if k in cls.model_fields or k == unknown}
        return data

    def check(self) -> None:
        """What the types cannot say, of every text the request holds: its size (413) and that
        it is text that can be encoded (422: JSON may hold a lone surrogate, "\\ud800")."""
        for name, value in self:
            if isinstance(value, list):
                check_texts(value, name)
            elif isinstance(value, str):
                check_one(value, name)


class TranslateRequest(Request):
    text: list[str] = Field(
        fail_fast=True, description=f"sentences to translate, at most {MAX_TEXTS}"
    )
    beam: int | None = Field(None, ge=1, le=MAX_BEAM, description="beam size (default: the run's)")
    alpha: float | None = Field(
        None, ge=0, le=MAX_ALPHA, allow_inf_nan=False, description="length penalty"
    )
    n_best: int = Field(
        1, ge=1, le=MAX_BEAM, description="hypotheses to return per sentence, <= beam"
    )


StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class GenerateRequest(Request):
    prompt: str = Field(description=f"text to continue, at most {MAX_CHARS} characters")
    max_new_tokens: int = Field(100, ge=0, le=4096)
    temperature: float = Field(
        0.8,
        ge=0,
        le=MAX_TEMPERATURE,
        allow_inf_nan=False,
        description=f"0: greedy; else at least {MIN_TEMPERATURE}",
    )
    top_k: int = Field(0, ge=0, description="sample from the k likeliest tokens; 0: all")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="nucleus mass")
    seed: int | None = Field(None, ge=0, lt=2**64, description="the same seed, the same text")
    stop: list[StopString] = Field(
        [], max_length=MAX_STOPS, fail_fast=True, description="end the text before these strings"
    )
    stream: bool = Field(False, description="server-sent events, one per token")

    _temperature = field_validator("temperature")(greedy_or_not_tiny)


class ClassifyRequest(Request):
    text: list[str] = Field(fail_fast=True, description=f"texts to label, at most {MAX_TEXTS}")


class TagRequest(Request):
    text: list[str] = Field(
        fail_fast=True, description=f"sentences to tag, words split at spaces, at most {MAX_TEXTS}"
    )


class AttentionRequest(Request):
    text: str = Field(description="the source sentence (a prompt, a text to classify)")
    target: str | None = Field(None, description="a translation to read instead of the model's")


def check_texts(texts: list[str], field: str) -> None:
    """Refuse more than MAX_TEXTS texts, or any text `check_one` refuses."""
    if len(texts) > MAX_TEXTS:
        raise TooLarge(field, f"{field}: {len(texts)} texts; the limit is {MAX_TEXTS} a request")
    for i, text in enumerate(texts):
        check_one(text, f"{field}[{i}]")


def check_one(text: str, field: str) -> None:
    """Refuse a text of more than MAX_CHARS characters (413), or one that is not valid
    Unicode (422)."""
    if len(text) > MAX_CHARS:
        raise TooLarge(field, f"{field}: {len(text):,} characters; the limit is {MAX_CHARS:,}")
    try:
        check_text(text, field)
    except ValueError as e:
        raise InputError(field, str(e)) from None

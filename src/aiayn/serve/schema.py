"""The JSON API's requests: types and ranges checked before anything runs (422 names the
field), and the size limits of a request (413 names the limit).

Types are strict ("5" is not a beam size) and unknown fields are refused, so that a misspelt
option is an error rather than silently the default.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_BODY = 1_000_000  # bytes
MAX_TEXTS = 256  # texts in one request
MAX_CHARS = 10_000  # characters in one text


class TooLarge(Exception):
    """A request over a size limit (413)."""


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TranslateRequest(Request):
    text: list[str] = Field(description=f"sentences to translate, at most {MAX_TEXTS}")
    beam: int | None = Field(None, ge=1, le=64, description="beam size (default: the run's)")
    alpha: float | None = Field(
        None, ge=0, le=10, allow_inf_nan=False, description="length penalty"
    )
    n_best: int = Field(1, ge=1, description="hypotheses to return per sentence, <= beam")


class GenerateRequest(Request):
    prompt: str = Field(description=f"text to continue, at most {MAX_CHARS} characters")
    max_new_tokens: int = Field(100, ge=0, le=4096)
    temperature: float = Field(0.8, ge=0, le=100, allow_inf_nan=False, description="0: greedy")
    top_k: int = Field(0, ge=0, description="sample from the k likeliest tokens; 0: all")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="nucleus mass")
    seed: int | None = Field(None, ge=0, lt=2**64, description="the same seed, the same text")
    stop: list[str] = Field([], max_length=16, description="end the text before these strings")
    stream: bool = Field(False, description="server-sent events, one per token")


class ClassifyRequest(Request):
    text: list[str] = Field(description=f"texts to label, at most {MAX_TEXTS}")


class AttentionRequest(Request):
    text: str = Field(description="the source sentence (a prompt, a text to classify)")
    target: str | None = Field(None, description="a translation to read instead of the model's")


def check_sizes(texts: list[str], field: str) -> None:
    """Refuse more than MAX_TEXTS texts, or a text of more than MAX_CHARS characters."""
    if len(texts) > MAX_TEXTS:
        raise TooLarge(f"{field}: {len(texts)} texts; the limit is {MAX_TEXTS} a request")
    for i, text in enumerate(texts):
        check_length(text, f"{field}[{i}]")


def check_length(text: str | None, field: str) -> None:
    """Refuse a text of more than MAX_CHARS characters."""
    if text is not None and len(text) > MAX_CHARS:
        raise TooLarge(f"{field}: {len(text):,} characters; the limit is {MAX_CHARS:,} a text")

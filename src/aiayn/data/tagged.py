"""Files of tagged words, plain or gzipped: CoNLL-U, and CoNLL-2003's word<TAB>tag columns.

CoNLL-U (universaldependencies.org/format.html): one word a line, ten tab-separated columns;
comment lines start with "#", a blank line ends a sentence. A line whose ID is a range ("3-4",
a multiword token) or decimal ("5.1", an empty node) is not a word to tag and is skipped. The
"columns" format: `word<TAB>tag` lines, a blank line between sentences (a "-DOCSTART-" line,
CoNLL-2003's document mark, is skipped). Errors name the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiayn.data.text import read_lines

FORMATS = ("conllu", "columns")
CONLLU_COLUMNS = 10
FORM = 2  # the word's column in CoNLL-U, 1-based
WORD_ID = re.compile(r"[0-9]+")  # a word's ID (str.isdigit would take "²" too)


@dataclass(frozen=True)
class Sentence:
    words: list[str]
    tags: list[str]
    line: int  # the line of its first word, for errors
    rows: list[list[str]] | None = None  # CoNLL-U: every line of it, as read, to write back


def read_tagged(path: str | Path, fmt: str = "conllu", column: int = 4) -> list[Sentence]:
    """The sentences of a tagged file; `column` (1-based) holds a CoNLL-U file's tags. A file
    without any is refused (training and evaluation need words)."""
    sentences = list(parse_tagged(read_lines(path), path, fmt, column))
    if not sentences:
        raise ValueError(f"{path}: no tagged word in it; expected {fmt} sentences")
    return sentences


def parse_tagged(
    lines: Iterable[str], path: str | Path, fmt: str = "conllu", column: int = 4
) -> Iterator[Sentence]:
    """The sentences of tagged `lines` (read from `path`, which errors name)."""
    if fmt not in FORMATS:
        raise ValueError(f"tagged format {fmt!r} is unknown; expected one of {FORMATS}")
    words: list[str] = []
    tags: list[str] = []
    rows: list[list[str]] = []
    first = 0
    for number, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if words:
                yield Sentence(words, tags, first, rows if fmt == "conllu" else None)
            elif rows:
                raise ValueError(f"{path}: line {number}: a sentence without words ends here")
            words, tags, rows = [], [], []
            continue
        cells = line.split("\t")
        if fmt == "conllu":
            rows.append(cells)
            word = conllu_word(cells, path, number, column)
        else:
            word = column_word(cells, path, number)
        if word is not None:
            if not words:
                first = number
            words.append(word[0])
            tags.append(word[1])


def conllu_word(
    cells: list[str], path: str | Path, number: int, column: int
) -> tuple[str, str] | None:
    """(word, tag) of a CoNLL-U line split at tabs; None for a comment, a multiword token's
    range or an empty node."""
    if cells[0].startswith("#"):
        return None
    if len(cells) != CONLLU_COLUMNS:
        raise ValueError(
            f"{path}: line {number} has {len(cells)} tab-separated columns; CoNLL-U has "
            f"{CONLLU_COLUMNS}"
        )
    if "-" in cells[0] or "." in cells[0]:
        return None
    if not WORD_ID.fullmatch(cells[0]):
        raise ValueError(f"{path}: line {number}: ID {cells[0]!r} is not a word number")
    word, tag = cells[FORM - 1], cells[column - 1]
    if not word or not tag:
        raise ValueError(f"{path}: line {number}: an empty word or tag")
    return word, tag


def column_word(cells: list[str], path: str | Path, number: int) -> tuple[str, str] | None:
    """(word, tag) of a `word<TAB>tag` line split at tabs; None for "-DOCSTART-"."""
    if cells[0] == "-DOCSTART-":
        return None
    if len(cells) != 2 or not cells[0] or not cells[1]:
        raise ValueError(
            f"{path}: line {number}: {len(cells)} tab-separated columns; expected word<TAB>tag"
        )
    return cells[0], cells[1]


def conllu_text(sentences: list[Sentence], tags: list[list[str]], column: int) -> str:
    """CoNLL-U of `sentences` as read, with column `column` of each word filled by `tags`."""
    out = []
    for sentence, predicted in zip(sentences, tags, strict=True):
        given = iter(predicted)
        for cells in sentence.rows or []:
            if WORD_ID.fullmatch(cells[0]):
                cells = [*cells]
                cells[column - 1] = next(given)
            out.append("\t".join(cells) + "\n")
        out.append("\n")
    return "".join(out)

"""`aiayn prepare` for a language model: its text as one stream of token ids per split
(`train.ids.npy`, `valid.ids.npy`, as nanoGPT's train.bin), so that training draws random
blocks read from disk and a text larger than memory trains.

The text is read line by line (cut after each newline, ends kept) three times at most: to
count its characters where the validation text is its tail (`data.valid_fraction`), to learn
the tokenizer, and to tokenize; the lines and the cut are exactly those of the in-memory path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aiayn.config import DataConfig
from aiayn.data.text import chunked_text, stream_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.prepare.arrays import array_streams, id_dtype

# characters per tokenizer batch: its encodings take many times the memory of their text
CHARS_PER_BATCH = 1 << 21


def _part(path: str, cut: int, head: bool) -> Iterator[str]:
    """The lines of the text's first `cut` characters (`head`), or of the rest."""
    seen = 0
    for line in stream_lines(path, keep_ends=True):
        start, seen = seen, seen + len(line)
        if head:
            if start >= cut:
                return
            yield line[: cut - start] if seen > cut else line
        elif seen > cut:
            yield line[max(cut - start, 0) :]


def text_splits(d: DataConfig) -> dict[str, Callable[[], Iterator[str]]]:
    """A fresh stream of lines for each split: `data.valid_text`, or the tail of
    `data.train_text`."""
    if d.valid_text:
        return {
            "train": partial(stream_lines, d.train_text, True),
            "valid": partial(stream_lines, d.valid_text, True),
        }
    total = sum(len(line) for line in stream_lines(d.train_text, keep_ends=True))
    cut = int(total * (1 - d.valid_fraction))
    return {
        "train": partial(_part, d.train_text, cut, True),
        "valid": partial(_part, d.train_text, cut, False),
    }


def token_stream(
    lines: Iterator[str], tok: TextTokenizer, split: str, path: Path, source: str
) -> int:
    """Tokenize `lines` (of the file `source`) into the `.npy` stream `path`, chunk by
    chunk; its token count."""
    dtype = id_dtype(tok.vocab_size)
    bar = tqdm(desc=f"tokenizing {split}", unit=" lines", unit_scale=True, dynamic_ncols=True)
    with bar, array_streams({split: path}, dtype) as streams:
        for batch in chunked_text(lines, CHARS_PER_BATCH):
            rows = tok.encode(batch)
            streams[split].append(np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype))
            bar.update(len(batch))
        if not streams[split].length:  # raised inside: no empty file is left in place
            raise ValueError(f"{source}: no {split} tokens")
        return streams[split].length


def write_streams(
    out: Path, d: DataConfig, fit: Callable[[Iterator[str]], TextTokenizer]
) -> tuple[TextTokenizer, dict[str, Any]]:
    """Learn the tokenizer from the training lines, then write each split's token stream;
    the tokenizer and each split's token count."""
    splits = text_splits(d)
    tok = fit(splits["train"]())
    counts = {}
    for split, lines in splits.items():
        source = d.valid_text if split == "valid" and d.valid_text else d.train_text
        counts[split] = {
            "tokens": token_stream(lines(), tok, split, out / f"{split}.ids.npy", source)
        }
    return tok, counts

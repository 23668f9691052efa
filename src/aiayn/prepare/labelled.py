"""`aiayn prepare` for a classifier: the training TSV's texts as token ids with offsets
(`train.text.npy`, `train.text.idx.npy`) and their class indices (`train.labels.npy`); the
class names, sorted as the in-memory path sorts them, go in the manifest."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aiayn.config import DataConfig
from aiayn.data.text import chunked, parse_labelled, stream_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.prepare.arrays import id_dtype

LINES_PER_BATCH = 20_000


def labelled(path: str) -> Iterator[tuple[str, str]]:
    return parse_labelled(stream_lines(path), path)


def write_labelled(
    out: Path, d: DataConfig, fit: Callable[[Iterator[str]], TextTokenizer], save: Callable
) -> tuple[TextTokenizer, list[str], dict[str, Any]]:
    """Learn the tokenizer from the training texts, then write their ids and class indices
    with `save(path, array)`; the tokenizer, the class names and the counts."""
    names = sorted({label for _, label in labelled(d.train_tsv)})
    index = {name: i for i, name in enumerate(names)}
    tok = fit(text for text, _ in labelled(d.train_tsv))
    dtype = id_dtype(tok.vocab_size)
    ids, lengths, classes = [], [], []
    bar = tqdm(desc="tokenizing train", unit=" texts", unit_scale=True, dynamic_ncols=True)
    with bar:
        for batch in chunked(labelled(d.train_tsv), LINES_PER_BATCH):
            rows = tok.encode([text for text, _ in batch])
            ids.append(np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype))
            lengths.append(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))
            classes.append(np.array([index[y] for _, y in batch], dtype=np.int64))
            bar.update(len(batch))
    n = np.concatenate(lengths)
    save(out / "train.text.npy", np.concatenate(ids))
    save(out / "train.text.idx.npy", np.concatenate([[0], np.cumsum(n)]))
    save(out / "train.labels.npy", np.concatenate(classes))
    return tok, names, {"train": {"texts": len(n), "tokens": int(n.sum())}}

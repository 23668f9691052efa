"""`aiayn prepare`: a translation config's text, tokenized once into a prepared dataset.

The files are read as streams (plain or `.gz`), the tokenizer learns from an iterator (its
memory grows with the vocabulary, not the corpus), and lines are tokenized in large batches,
which `tokenizers` spreads over all cores. The folder is new, empty, or one that prepare
made (aiayn.run.folder), emptied first; the manifest is written last, so a prepare that is killed
leaves nothing that training takes for a finished dataset, and running it again writes the
same files.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from aiayn.config import DataConfig, RunConfig
from aiayn.data.recase import Recaser
from aiayn.data.text import chunked, stream_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.families import family
from aiayn.prepare.arrays import array_streams, id_dtype, save_array
from aiayn.prepare.dataset import (
    FORMAT,
    MANIFEST,
    SIDES,
    SOURCES,
    TOKEN_FIELDS,
    file_digest,
    fit_data_tokenizer,
)
from aiayn.prepare.labelled import write_labelled
from aiayn.prepare.stream import write_streams
from aiayn.run.atomic import atomic_write_text
from aiayn.run.files import RECASER, SRC_TOKENIZER, TOKENIZER
from aiayn.run.folder import OutputFolder

LINES_PER_BATCH = 20_000


def pairs(src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """Line-aligned pairs of two files; differing line counts are an error."""
    for a, b in itertools.zip_longest(stream_lines(src), stream_lines(tgt)):
        if a is None or b is None:
            raise ValueError(f"parallel files differ in length: {src} and {tgt}")
        yield a, b


def write_split(
    out: Path, split: str, files: tuple[str, str], toks: tuple[TextTokenizer, ...], cfg: RunConfig
) -> dict[str, int]:
    """Tokenize one split's pairs into its arrays; returns its counts."""
    dtype = id_dtype(max(t.vocab_size for t in toks))
    lengths: dict[str, list[np.ndarray]] = {s: [] for s in SIDES}
    paths = {side: out / f"{split}.{side}.npy" for side in SIDES}
    bar = tqdm(desc=f"tokenizing {split}", unit=" pairs", unit_scale=True, dynamic_ncols=True)
    # the bar is closed on errors too, so that an error starts a line of its own
    with bar, array_streams(paths, dtype) as ids:
        for batch in chunked(pairs(*files), LINES_PER_BATCH):
            for side, tok, lines in zip(SIDES, toks, zip(*batch, strict=True), strict=True):
                rows = tok.encode(list(lines))
                lengths[side].append(np.fromiter(map(len, rows), np.int64, len(rows)))
                ids[side].append(np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype))
            bar.update(len(batch))
    counts = {}
    for side in SIDES:
        n = np.concatenate(lengths[side]) if lengths[side] else np.zeros(0, dtype=np.int64)
        save_array(out / f"{split}.{side}.idx.npy", np.concatenate([[0], np.cumsum(n)]))
        counts[f"{side}_tokens"], lengths[side] = int(n.sum()), n
    counts["pairs"] = len(lengths["src"])
    # as training counts them: the longer side, with </s> (or <s>)
    longest = np.maximum(lengths["src"], lengths["tgt"]) + 1
    counts["longer_than_max_len"] = int((longest > cfg.data.max_pair_len).sum())
    if not counts["pairs"]:
        raise ValueError(f"{files[0]}: no sentence pairs")
    return counts


def fit_tokenizers(cfg: RunConfig) -> tuple[TextTokenizer, TextTokenizer]:
    """(source, target) tokenizers learnt from the training files as streams, exactly as the
    in-memory path learns them from the same lines."""
    d = cfg.data
    if d.joint_vocab:
        joint = fit_data_tokenizer(
            d, itertools.chain(stream_lines(d.train_src), stream_lines(d.train_tgt))
        )
        return joint, joint
    return (
        fit_data_tokenizer(d, stream_lines(d.train_src)),
        fit_data_tokenizer(d, stream_lines(d.train_tgt)),
    )


class Written(NamedTuple):
    """What a family's writer made: each split's counts, the vocabulary size(s), the data
    fields the manifest records, and entries of the manifest of its own."""

    splits: dict[str, Any]
    vocab: Any
    fields: tuple[str, ...]
    extra: dict[str, Any]


Fit = Callable[[Iterator[str]], TextTokenizer]


@dataclass(frozen=True)
class Writer:
    """How `aiayn prepare` writes one family's dataset (aiayn.families names it)."""

    needed: Callable[[DataConfig], tuple[str, ...]]  # the data fields that must be set
    inputs: tuple[str, ...]  # the data fields naming files, digested into the manifest
    write: Callable[[Path, RunConfig, Fit], Written]


def prepare(cfg: RunConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the prepared dataset of `cfg`'s files (a translation's pairs, a language model's
    text or a classifier's labelled texts) into `out`; the manifest."""
    kind, d = family(cfg.model.arch), cfg.data
    writer: Writer = kind.part("prepare")
    for name in writer.needed(d):
        if not getattr(d, name):
            raise ValueError(f"data.{name} is unset; nothing to prepare")
    # a folder of prepare's own is emptied first: from there on, not a finished dataset
    with OutputFolder(out, "prepare", keep_owner=True):
        sources = {n: file_digest(Path(getattr(d, n))) for n in writer.inputs if getattr(d, n)}
        log("learning the tokenizer")
        splits, vocab, fields, extra = writer.write(out, cfg, partial(fit_data_tokenizer, d))
        manifest = {
            "format": FORMAT,
            "task": kind.prepared_task,
            **extra,
            "data": {name: getattr(d, name) for name in fields},
            "max_len": d.length(cfg.model.arch),
            "vocab_size": vocab,
            "sources": sources,
            "splits": splits,
        }
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    log(f"prepared {out}: " + ", ".join(f"{k} {v}" for k, v in splits["train"].items()))
    return manifest


def write_translation(out: Path, cfg: RunConfig, _fit: Fit) -> Written:
    """Tokenizers, recaser and each split's arrays of a translation."""
    d = cfg.data
    toks = fit_tokenizers(cfg)
    toks[1].save(out / TOKENIZER)
    if not d.joint_vocab:
        toks[0].save(out / SRC_TOKENIZER)
    if d.lowercase:
        atomic_write_text(out / RECASER, Recaser.fit(stream_lines(d.train_tgt)).to_json())
    splits = {
        split: write_split(out, split, (getattr(d, s), getattr(d, t)), toks, cfg)
        for split, (s, t) in SOURCES.items()
        if getattr(d, s)
    }
    return Written(splits, {"src": toks[0].vocab_size, "tgt": toks[1].vocab_size}, TOKEN_FIELDS, {})


def write_language_model(out: Path, cfg: RunConfig, fit: Fit) -> Written:
    """A language model's text as one stream of ids per split, and its tokenizer."""
    d = cfg.data
    tok, splits = write_streams(out, d, fit)
    tok.save(out / TOKENIZER)
    fields = (*TOKEN_FIELDS, *(() if d.valid_text else ("valid_fraction",)))
    return Written(splits, tok.vocab_size, fields, {})


def write_classification(out: Path, cfg: RunConfig, fit: Fit) -> Written:
    """A classifier's training texts as ids, their class indices, and its tokenizer."""
    tok, labels, splits = write_labelled(out, cfg.data, fit, save_array)
    tok.save(out / TOKENIZER)
    return Written(splits, tok.vocab_size, TOKEN_FIELDS, {"labels": labels})


def pairs_needed(d: DataConfig) -> tuple[str, ...]:
    return ("train_src", "train_tgt", *(("valid_tgt",) if d.valid_src else ()))


def text_needed(_d: DataConfig) -> tuple[str, ...]:
    return ("train_text",)


def tsv_needed(_d: DataConfig) -> tuple[str, ...]:
    return ("train_tsv",)


TRANSLATION = Writer(
    pairs_needed, tuple(n for pair in SOURCES.values() for n in pair), write_translation
)
LANGUAGE_MODEL = Writer(text_needed, ("train_text", "valid_text"), write_language_model)
CLASSIFICATION = Writer(tsv_needed, ("train_tsv", "valid_tsv"), write_classification)

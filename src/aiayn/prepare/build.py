"""`aiayn prepare`: a translation config's text, tokenized once into a prepared dataset.

The files are read as streams (plain or `.gz`), the tokenizer learns from an iterator (its
memory grows with the vocabulary, not the corpus), and lines are tokenized in large batches,
which `tokenizers` spreads over all cores. The folder is new, empty, or one that prepare
made (aiayn.outdir), emptied first; the manifest is written last, so a prepare that is killed
leaves nothing that training takes for a finished dataset, and running it again writes the
same files.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aiayn.atomic import atomic_write_text
from aiayn.config import RunConfig
from aiayn.data.recase import Recaser
from aiayn.data.text import chunked, stream_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.outdir import OutputFolder
from aiayn.prepare.arrays import array_streams, id_dtype, save_array
from aiayn.prepare.dataset import FORMAT, MANIFEST, SIDES, SOURCES, TOKEN_FIELDS, file_digest
from aiayn.prepare.labelled import write_labelled
from aiayn.prepare.stream import write_streams
from aiayn.tasks import fit_data_tokenizer
from aiayn.tasks.translation import RECASER, SRC_TOKENIZER
from aiayn.train.checkpoint import TOKENIZER

LINES_PER_BATCH = 20_000
TASKS = {
    "encoder_decoder": "translation",
    "decoder_only": "language_model",
    "encoder_classifier": "classification",
}


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


def prepare(cfg: RunConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the prepared dataset of `cfg`'s files (a translation's pairs or a language
    model's text) into `out`; the manifest."""
    arch, d = cfg.model.arch, cfg.data
    text = arch != "encoder_decoder"
    needed = ("train",) if text else ("train_src", "train_tgt")
    for name in (*needed, *(("valid_tgt",) if d.valid_src and not text else ())):
        if not getattr(d, name):
            raise ValueError(f"data.{name} is unset; nothing to prepare")
    names = ("train", "valid") if text else [n for pair in SOURCES.values() for n in pair]
    extra: dict[str, Any] = {}
    # a folder of prepare's own is emptied first: from there on, not a finished dataset
    with OutputFolder(out, "prepare", keep_owner=True):
        sources = {n: file_digest(Path(getattr(d, n))) for n in names if getattr(d, n)}
        log("learning the tokenizer")
        fit = partial(fit_data_tokenizer, d)
        if arch == "encoder_classifier":
            tok, extra["labels"], splits = write_labelled(out, d, fit, save_array)
            tok.save(out / TOKENIZER)
            fields, vocab = TOKEN_FIELDS, tok.vocab_size
        elif text:
            tok, splits = write_streams(out, d, fit)
            tok.save(out / TOKENIZER)
            fields = (*TOKEN_FIELDS, *(() if d.valid else ("valid_fraction",)))
            vocab: Any = tok.vocab_size
        else:
            splits, vocab = write_translation(out, cfg)
            fields = TOKEN_FIELDS
        manifest = {
            "format": FORMAT,
            "task": TASKS[arch],
            **extra,
            "data": {name: getattr(d, name) for name in fields},
            "max_len": d.length(arch),
            "vocab_size": vocab,
            "sources": sources,
            "splits": splits,
        }
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    log(f"prepared {out}: " + ", ".join(f"{k} {v}" for k, v in splits["train"].items()))
    return manifest


def write_translation(out: Path, cfg: RunConfig) -> tuple[dict[str, Any], dict[str, int]]:
    """Tokenizers, recaser and each split's arrays of a translation; (counts, vocabularies)."""
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
    return splits, {"src": toks[0].vocab_size, "tgt": toks[1].vocab_size}

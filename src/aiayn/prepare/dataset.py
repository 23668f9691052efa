"""A prepared (binarized) translation dataset: token ids written once, read from disk by every
training process.

DATA_DIR holds, per split (train, valid) and side (src, tgt), one flat array of token ids
(`SPLIT.SIDE.npy`, uint16 where the vocabulary fits, else uint32) and the offsets where each
sentence starts (`SPLIT.SIDE.idx.npy`, int64, one more than the sentences), beside
`tokenizer.json` (and `src_tokenizer.json` without a joint vocabulary), `recaser.json` for
lowercased data, and `manifest.json`, written last: a directory without it is not a finished
dataset. Arrays load with `numpy.load(mmap_mode="r")`; training reads the ids run by run
(`IdArray`), so the page cache holds one copy however many processes read them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aiayn.config import DataConfig
from aiayn.data.batching import drop_long, token_budget_batches
from aiayn.data.parallel import TranslationBatch, shifted_batch
from aiayn.data.tokenizer import TextTokenizer, fit_tokenizer
from aiayn.run.files import TOKENIZER
from aiayn.run.paths import inside
from aiayn.safeio import check_input, open_input, read_input_json

FORMAT = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
SIDES = ("src", "tgt")
# what the tokenizer and its ids depend on: a config must agree with the dataset on each
TOKEN_FIELDS = ("tokenizer", "vocab_size", "joint_vocab", "lowercase")
SOURCES = {"train": ("train_src", "train_tgt"), "valid": ("valid_src", "valid_tgt")}
# Manifests written while data.train and data.valid named a language model's text and a
# classifier's TSV alike keyed those sources "train" and "valid": by task, their names now
OLD_SOURCES = {
    "language_model": {"train": "train_text", "valid": "valid_text"},
    "classification": {"train": "train_tsv", "valid": "valid_tsv"},
}


def fit_data_tokenizer(
    d: DataConfig, texts: Iterable[str], punctuation: bool = True
) -> TextTokenizer:
    """A tokenizer of the kind, size and case the data config asks for, learnt from `texts`
    (`punctuation`: words are split at punctuation too)."""
    return fit_tokenizer(d.tokenizer, texts, d.vocab_size, d.lowercase, punctuation)


def file_digest(path: Path) -> dict[str, Any]:
    """A file's path, size, modification time (ns) and sha256, read in blocks."""
    h = hashlib.sha256()
    with open_input(path) as f:
        before = os.fstat(f.fileno())
        while block := f.read(1 << 22):
            h.update(block)
    # a file written while it was read keeps no time, so the next check hashes it again
    mtime = before.st_mtime_ns if path.stat().st_mtime_ns == before.st_mtime_ns else None
    return {"path": str(path), "size": before.st_size, "mtime_ns": mtime, "sha256": h.hexdigest()}


def unchanged(file: Path, source: dict[str, Any]) -> bool:
    """Whether `file` is still the one `source` describes: its size, and then its sha256
    unless its modification time is still the one recorded (make's and rsync's quick
    check: every process of a run would otherwise hash gigabytes before its first step)."""
    stat = file.stat()
    if stat.st_size != source["size"]:
        return False
    if source.get("mtime_ns") is not None and stat.st_mtime_ns == source["mtime_ns"]:
        return True
    return file_digest(file)["sha256"] == source["sha256"]


def read_manifest(folder: Path, task: str = "translation") -> dict[str, Any]:
    """The manifest of a finished dataset for `task`, refused if absent, unreadable, of
    another format or of another task."""
    path = inside(folder, MANIFEST)
    if not path.is_file():
        raise ValueError(
            f"{folder}: not a finished prepared dataset (no {MANIFEST}); run aiayn prepare"
        )
    manifest = read_input_json(path, MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValueError(f"{path}: format {found!r}, expected {FORMAT}; prepare the data again")
    for key, kind in (("task", str), ("data", dict), ("sources", dict), ("splits", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not {kind.__name__}")
    if manifest["task"] != task:
        raise ValueError(f"{path}: a {manifest['task']} dataset; this run needs {task}")
    renames = OLD_SOURCES.get(task, {})
    manifest["sources"] = {renames.get(k, k): v for k, v in manifest["sources"].items()}
    return manifest


def refuse_other_tokenizers(
    dataset: tuple[TextTokenizer, ...], run: tuple[TextTokenizer, ...], folder: Path, run_dir: Path
) -> None:
    """A resumed run trains on with its own tokenizers only: the dataset's must equal them."""
    if any(a.tok.to_str() != b.tok.to_str() for a, b in zip(dataset, run, strict=True)):
        raise ValueError(f"{folder}: its tokenizer differs from the one {run_dir} was trained with")


def prepared_tokenizer(folder: Path, run_dir: Path, resume: bool) -> TextTokenizer:
    """The tokenizer of a one-tokenizer dataset (language model, classifier), or of the run
    being resumed, which must equal it."""
    tok = TextTokenizer.load(inside(folder, TOKENIZER))
    if not resume:
        return tok
    run_tok = TextTokenizer.load(inside(run_dir, TOKENIZER))
    refuse_other_tokenizers((tok,), (run_tok,), folder, run_dir)
    return run_tok


def check_dataset(folder: Path, manifest: dict[str, Any], data: Any) -> None:
    """Refuse a dataset whose token settings differ from the config's `data`, or whose source
    files changed (size or sha256) since it was prepared."""
    path = folder / MANIFEST
    for name in manifest["data"]:
        if not hasattr(data, name):
            raise ValueError(f"{path}: data field {name!r} is unknown")
        if manifest["data"].get(name) != getattr(data, name):
            raise ValueError(
                f"{path}: prepared with data.{name}={manifest['data'].get(name)!r}, but the "
                f"config has {getattr(data, name)!r}"
            )
    for name, source in manifest["sources"].items():
        if not (
            hasattr(data, name)
            and isinstance(source, dict)
            and isinstance(source.get("path"), str)
            and isinstance(source.get("size"), int)
            and isinstance(source.get("sha256"), str)
            and isinstance(source.get("mtime_ns"), int | None)
        ):
            raise ValueError(f"{path}: source {name!r} is not a data file's path, size and sha256")
        file = Path(source["path"])
        # only a regular file is read: a crafted manifest naming /dev/zero or a pipe would
        # otherwise be hashed forever
        if file.is_file() and not unchanged(file, source):
            raise ValueError(
                f"{file}: changed since {folder} was prepared from it (size or sha256); "
                "prepare the data again"
            )


def load_array(folder: Path, name: str, dtypes: tuple[str, ...]) -> np.ndarray:
    """A memory-mapped 1-D array, refused unless whole and of one of `dtypes`."""
    path = inside(folder, name)
    if not path.exists() and not path.is_symlink():
        raise ValueError(f"{path}: missing from the prepared dataset")
    try:
        array = np.load(check_input(path), mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # a truncated file or a bad header
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    if array.ndim != 1 or array.dtype.name not in dtypes:
        raise ValueError(f"{path}: a {array.ndim}-D {array.dtype} array; expected 1-D {dtypes}")
    return array


class StoredArray:
    """A 1-D `.npy` array read run by run with pread, not through a memory map: the runs come
    from the page cache, which every process shares, but a mapping would add each page it
    touched, and the pages the kernel maps around it, to every process's resident memory (on
    a 4.5M-pair corpus, the whole 0.4 GB of ids within 200 steps, and 72 MB of offsets)."""

    def __init__(self, folder: Path, name: str, dtypes: tuple[str, ...]) -> None:
        mapped = load_array(folder, name, dtypes)  # checks header and size
        self.folder, self.name, self.path = folder, name, folder / name
        self.dtype, self.length, self.start = mapped.dtype, len(mapped), mapped.offset
        self.file = open_input(inside(folder, name))  # open as long as the array

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker that is not forked
        return {k: v for k, v in self.__dict__.items() if k != "file"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # through `inside` again: a link put there since must not lead out of the folder
        self.file = open_input(inside(self.folder, self.name))

    def runs(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """array[starts[i] : starts[i] + lengths[i]] for each i, end to end."""
        out = np.empty(int(lengths.sum()), dtype=self.dtype)
        view, size, at, fd = memoryview(out).cast("B"), self.dtype.itemsize, 0, self.file.fileno()
        for start, n in zip(starts.tolist(), lengths.tolist(), strict=True):
            want = n * size
            if os.preadv(fd, [view[at : at + want]], self.start + start * size) < want:
                raise ValueError(f"{self.path}: shorter than when opened; prepare the data again")
            at += want
        return out

    def chunks(self, size: int = 1 << 20) -> Iterator[np.ndarray]:
        """The whole array, `size` values at a time."""
        for a in range(0, self.length, size):
            yield self.runs(np.array([a]), np.array([min(size, self.length - a)]))


class IdArray(StoredArray):
    """Token ids, each read checked against the vocabulary: a start reads nothing whole (a
    stream may be larger than memory), and a damaged id is refused, naming the file, in the
    batch that reads it."""

    def __init__(self, folder: Path, name: str, vocab_size: int) -> None:
        super().__init__(folder, name, ("uint16", "uint32"))
        self.vocab_size = vocab_size

    def runs(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """ids[starts[i] : starts[i] + lengths[i]] for each i, end to end, as int64."""
        ids = super().runs(starts, lengths).astype(np.int64)
        if ids.size and int(ids.max()) >= self.vocab_size:
            raise ValueError(
                f"{self.path}: id {int(ids.max()):,} beyond the vocabulary of "
                f"{self.vocab_size:,}; prepare the data again"
            )
        return ids


def cut_into_sentences(offsets: StoredArray, total: int, chunk_size: int = 1 << 20) -> bool:
    """Whether `offsets` start at 0, never decrease and end at `total`, read a chunk at a time."""
    previous, first = 0, True
    for chunk in offsets.chunks(chunk_size):
        if (first and chunk[0] != 0) or chunk[0] < previous or np.any(np.diff(chunk) < 0):
            return False
        previous, first = int(chunk[-1]), False
    return not first and previous == total


class Side:
    """One side of a split: sentence i is ids[offsets[i]:offsets[i + 1]]."""

    def __init__(self, folder: Path, split: str, side: str, vocab_size: int) -> None:
        self.ids = IdArray(folder, f"{split}.{side}.npy", vocab_size)
        self.offsets = StoredArray(folder, f"{split}.{side}.idx.npy", ("int64",))
        if not cut_into_sentences(self.offsets, len(self.ids)):
            raise ValueError(
                f"{self.offsets.path}: offsets do not cut {split}.{side}.npy into sentences"
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def length_chunks(self, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Each sentence's length, `chunk` at a time, in order."""
        for a in range(0, len(self), chunk):
            n = min(chunk, len(self) - a)
            yield np.diff(self.offsets.runs(np.array([a]), np.array([n + 1])))

    def lengths(self) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=np.int64), *self.length_chunks()])

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids of sentences `indices`, end to end; each one's length)."""
        bounds = self.offsets.runs(indices, np.full(len(indices), 2)).reshape(-1, 2)
        starts, n = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
        return self.ids.runs(starts, n), n

    def row_lists(self, indices: Sequence[int]) -> list[list[int]]:
        flat, n = self.rows(np.asarray(indices, dtype=np.int64))
        return [row.tolist() for row in np.split(flat, np.cumsum(n)[:-1])]

    def padded(self, indices: np.ndarray, pad: int, eos: int, bos: int | None = None) -> Tensor:
        """(B, longest) sentences `indices`, each [bos] + ids + [eos], right-padded."""
        flat, n = self.rows(indices)
        lead = 0 if bos is None else 1
        out = np.full((len(n), int(n.max(initial=0)) + lead + 1), pad, dtype=np.int64)
        rows = np.repeat(np.arange(len(n)), n)
        out[rows, np.arange(len(flat)) - np.repeat(np.cumsum(n) - n, n) + lead] = flat
        if bos is not None:
            out[:, 0] = bos
        out[np.arange(len(n)), n + lead] = eos
        return torch.from_numpy(out)


def pair_costs(src: Side, tgt: Side, chunk: int = 1 << 20) -> np.ndarray:
    """Each pair's padded cost, as ParallelData's: its longer side with </s> (or <s>), as
    int32 (capped), computed a chunk at a time: millions of pairs make no int64 temporaries."""
    out, at = np.empty(len(src), dtype=np.int32), 0
    for a, b in zip(src.length_chunks(chunk), tgt.length_chunks(chunk), strict=True):
        out[at : at + len(a)] = np.minimum(np.maximum(a, b) + 1, np.iinfo(np.int32).max)
        at += len(a)
    return out


class PreparedParallel:
    """Sentence pairs read from a prepared split, as `ParallelData` reads them from lists:
    the same lengths, batches and collated tensors, so both train alike. `keep` (the pairs
    used) and `cost` (their lengths) are the only arrays per pair held in memory."""

    def __init__(
        self, src: Side, tgt: Side, keep: np.ndarray, cost: np.ndarray, special: tuple[int, ...]
    ) -> None:
        self.src, self.tgt, self.keep, self.cost = src, tgt, keep, cost
        self.bos, self.eos, self.pad = special

    @classmethod
    def open(
        cls, folder: Path, split: str, vocab: tuple[int, int], bos: int, eos: int, pad: int
    ) -> PreparedParallel:
        src, tgt = (Side(folder, split, s, v) for s, v in zip(SIDES, vocab, strict=True))
        if len(src) != len(tgt):
            raise ValueError(f"{folder}: {split} has {len(src)} sources, {len(tgt)} targets")
        keep = np.arange(len(src), dtype=np.int32 if len(src) < 2**31 else np.int64)
        return cls(src, tgt, keep, pair_costs(src, tgt), (bos, eos, pad))

    def __len__(self) -> int:
        return len(self.keep)

    def lengths(self) -> np.ndarray:
        return self.cost

    def without_long(self, max_len: int) -> tuple[PreparedParallel, int]:
        keep, dropped = drop_long(self.cost, max_len)
        special = (self.bos, self.eos, self.pad)
        kept = PreparedParallel(self.src, self.tgt, self.keep[keep], self.cost[keep], special)
        return kept, dropped

    def batches(self, batch_tokens: int, seed: int, shuffle: bool = True) -> list[np.ndarray]:
        return token_budget_batches(self.cost, batch_tokens, seed, shuffle)

    def collate(self, indices: Sequence[int]) -> TranslationBatch:
        pairs = self.keep[np.asarray(indices, dtype=np.int64)]
        src = self.src.padded(pairs, self.pad, self.eos)
        tgt = self.tgt.padded(pairs, self.pad, self.eos, self.bos)
        return shifted_batch(src, tgt, self.pad)

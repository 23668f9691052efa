"""Reading one-sentence-a-line text files, plain or gzipped, with errors that name file and line."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from aiayn.safeio import decode_utf8, open_input, read_bounded

# a corpus is read whole into memory: past this it could not be anyway
MAX_TEXT_BYTES = 32 << 30


def read_bytes(path: str | Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """A file's bytes (`.gz` is decompressed), at most `limit` of them; a missing, empty,
    corrupt or irregular file (a FIFO, a device) is an error."""
    path = Path(path)
    with open_input(path) as f:
        try:
            raw = read_bounded(gzip.GzipFile(fileobj=f) if path.suffix == ".gz" else f, limit, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    if not raw:
        raise ValueError(f"{path}: file is empty")
    return raw


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (`.gz` is decompressed) as one string."""
    return decode_utf8(read_bytes(path), path)


def read_lines(path: str | Path, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """All lines of a UTF-8 text file (`.gz` is decompressed), without line endings."""
    lines = read_bytes(path, limit).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: line {number} is not valid UTF-8 ({e.reason})") from None
    return out


def read_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a TSV file `text<TAB>label` whose first line is a header."""
    pairs = list(parse_labelled(read_lines(path), path))
    return [t for t, _ in pairs], [y for _, y in pairs]


def parse_labelled(lines: Iterable[str], path: str | Path) -> Iterator[tuple[str, str]]:
    """(text, label) of each line after the header of TSV lines `text<TAB>label`."""
    count = 0
    for number, line in enumerate(lines, start=1):
        if number == 1:
            continue
        text, tab, label = line.rpartition("\t")
        if not tab or not label.strip():
            raise ValueError(f"{path}: line {number} is not text<TAB>label: {line[:60]!r}")
        count += 1
        yield text, label.strip()
    if not count:
        raise ValueError(f"{path}: no examples after the header line")


def chunked(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of `size` items (the last may be shorter), read lazily."""
    it = iter(lines)
    while chunk := list(islice(it, size)):
        yield chunk


def chunked_text(lines: Iterable[str], chars: int) -> Iterator[list[str]]:
    """Consecutive lists of lines of about `chars` characters in all (at least one line),
    read lazily: a tokenizer's batch stays bounded however long the lines are."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def read_parallel(src: str | Path, tgt: str | Path) -> tuple[list[str], list[str]]:
    """Line-aligned source and target sentences; differing line counts are an error."""
    src_lines, tgt_lines = read_lines(src), read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"parallel files differ in length: {src} has {len(src_lines)} lines, "
            f"{tgt} has {len(tgt_lines)}"
        )
    return src_lines, tgt_lines


def stream_lines(path: str | Path | None, keep_ends: bool = False) -> Iterator[str]:
    """The lines of a UTF-8 file (`.gz` is decompressed) or of stdin (None), without line
    endings unless `keep_ends` (then cut after each "\n" only, as `text_lines` cuts); a line
    that is not UTF-8 is an error naming the file and line. The file is opened at once (a
    missing one is an error before anything else runs), read lazily."""
    if path is None:
        binary = getattr(sys.stdin, "buffer", None)
        if binary is None:  # stdin replaced by text (tests): it is decoded already
            return (line.rstrip("\n").rstrip("\r") for line in sys.stdin)
        return _decoded(nullcontext(binary), "stdin", keep_ends)
    return _decoded(open_input(path), str(path), keep_ends, gz=str(path).endswith(".gz"))


def _decoded(opened: BinaryIO, name: str, keep_ends: bool, gz: bool = False) -> Iterator[str]:
    number = 0
    try:
        with opened as raw_file:
            f = gzip.GzipFile(fileobj=raw_file) if gz else raw_file
            for number, raw in enumerate(f, start=1):  # noqa: B007 (read in the handler)
                line = raw.decode("utf-8")
                yield line if keep_ends else line.rstrip("\n").rstrip("\r")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: line {number} is not valid UTF-8 ({e.reason})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: not a valid gzip file ({e})") from None


def text_lines(text: str) -> list[str]:
    """`text` cut after each "\n" (there only, as a file read line by line), ends kept."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])

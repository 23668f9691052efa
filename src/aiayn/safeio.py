"""The one way aiayn opens a file it did not write, and the one check of text from users.

Every reader goes through `open_input`: the path must name a regular file (a FIFO or a
device such as /dev/zero would hang or never end), inside `within` when one is given (links
followed), and it is read with a size bound. Text from users (command-line words, HTTP
bodies) goes through `check_text`: it must be encodable as UTF-8, which refuses both lone
surrogates in JSON and the surrogate escapes Python gives invalid UTF-8 on the command line.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 16 << 20


class InputError(ValueError):
    """A file refused by this module; its message names the file and says why."""


def check_text(value: str, field: str) -> str:
    """`value`, refused (naming `field`) unless it is valid Unicode text, encodable as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{field}: not valid UTF-8 text (character {e.start} is {value[e.start]!r}, "
            "a lone surrogate or an undecodable byte)"
        ) from None
    return value


def finite_number(value: object) -> bool:
    """Whether an untrusted value is a finite int or float: not a bool, not NaN or inf, and
    not an integer past any float (which math.isfinite answers with OverflowError)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def open_input(path: str | Path, within: str | Path | None = None) -> BinaryIO:
    """`path` opened for reading in binary, refused unless it is a regular file (inside
    `within`, links followed, when given). The open never blocks (a FIFO is refused, not
    waited on)."""
    path = Path(path)
    if within is not None:
        root = Path(within).resolve()
        target = path.resolve()
        if not target.is_relative_to(root):
            raise InputError(f"{path}: a link out of its directory {within} (to {target}); refused")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: could not be opened ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise InputError(f"{path}: {kind}; expected a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_input(path: str | Path, within: str | Path | None = None) -> Path:
    """`path`, refused as `open_input` refuses it: for a library that opens the file by its
    path itself (safetensors, CTranslate2), checked right before the path is handed over."""
    with open_input(path, within):
        return Path(path)


def read_input(path: str | Path, limit: int, within: str | Path | None = None) -> bytes:
    """The bytes of the regular file `path`, refused if it holds more than `limit`."""
    with open_input(path, within) as f:
        if os.fstat(f.fileno()).st_size > limit:  # refused before a byte is read
            raise InputError(f"{path}: larger than {limit:,} bytes; refused")
        return read_bounded(f, limit, path)


def read_bounded(f: BinaryIO, limit: int, path: str | Path) -> bytes:
    """The rest of the open file `f` (of `path`; a decompressing reader, say), refused past
    `limit` bytes; read in chunks, so that a large limit reserves no memory."""
    chunks, size = [], 0
    while chunk := f.read(min(CHUNK, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise InputError(f"{path}: larger than {limit:,} bytes; refused")
    return b"".join(chunks)


def read_input_text(path: str | Path, limit: int, within: str | Path | None = None) -> str:
    """`read_input` decoded as UTF-8; a bad byte is an error naming the file and line."""
    return decode_utf8(read_input(path, limit, within), path)


def decode_utf8(raw: bytes, path: str | Path) -> str:
    """`raw` (the bytes of `path`) as text; a bad byte is an error naming the file and line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}: line {line} is not valid UTF-8 ({e.reason})") from None


def read_input_json(path: str | Path, limit: int, within: str | Path | None = None) -> Any:
    """`read_input_text` parsed as JSON; a parse error names the file."""
    text = read_input_text(path, limit, within)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from None

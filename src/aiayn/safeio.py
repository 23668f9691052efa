"""The one way aiayn opens a file it did not write, and the one check of text from users.

Every reader goes through `open_input`: the path must name a regular file (a FIFO or a
device such as /dev/zero would hang or never end), inside `within` when one is given (links
followed), and it is read with a size bound. Text from users (command-line words, HTTP
bodies) goes through `check_text`: it must be encodable as UTF-8, which refuses both lone
surrogates in JSON and the surrogate escapes Python gives invalid UTF-8 on the command line.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO


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


def open_input(path: str | Path, within: str | Path | None = None) -> BinaryIO:
    """`path` opened for reading in binary, refused unless it is a regular file (inside
    `within`, links followed, when given). The open never blocks (a FIFO is refused, not
    waited on)."""
    path = Path(path)
    if within is not None:
        root = Path(within).resolve()
        target = path.resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"{path}: a link out of its directory {within} (to {target}); refused")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{path}: could not be opened ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ValueError(f"{path}: {kind}; expected a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | Path, limit: int, within: str | Path | None = None) -> bytes:
    """The bytes of the regular file `path`, refused if it holds more than `limit`."""
    with open_input(path, within) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: larger than {limit:,} bytes; refused")
    return data


def read_input_text(path: str | Path, limit: int, within: str | Path | None = None) -> str:
    """`read_input` decoded as UTF-8; a bad byte is an error naming the file and line."""
    raw = read_input(path, limit, within)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 ({e.reason})") from None


def read_input_json(path: str | Path, limit: int, within: str | Path | None = None) -> Any:
    """`read_input_text` parsed as JSON; a parse error names the file."""
    text = read_input_text(path, limit, within)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None

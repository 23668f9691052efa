"""A CTranslate2 `model.bin` read through before CTranslate2's own C++ reader sees it: that
reader trusts the file's sizes, and a damaged file crashes the process (a segmentation fault,
found by tests/test_fuzz_inputs.py) where it should be an error naming the file.

The layout is the one `ctranslate2.specs.ModelSpec._serialize` writes: a version, the spec's
name and revision, the variables (name, rank, dims, dtype, byte count, bytes), then aliases
(pairs of names). Every count and size must agree with each other and with the file's length.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import BinaryIO

from aiayn.safeio import open_input

# CTranslate2's DataType enum: float32, int8, int16, int32, float16, bfloat16 (bytes each)
ITEM_BYTES = (4, 1, 2, 4, 2, 2)
MAX_VARIABLES = 1 << 16
MAX_RANK = 8


class Reader:
    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.f, self.path, self.size = f, path, size

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what} at byte {self.f.tell():,}; export-ct2 again")

    def take(self, fmt: str) -> int:
        n = struct.calcsize(fmt)
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail("cut short")
        return struct.unpack(f"<{fmt}", data)[0]

    def string(self) -> str:
        n = self.take("H")
        data = self.f.read(n)
        if n == 0 or len(data) != n or data[-1] != 0:
            raise self.fail("a malformed name")
        try:
            return data[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a name that is not UTF-8") from None

    def skip(self, n: int) -> None:
        if self.f.tell() + n > self.size:
            raise self.fail(f"a tensor of {n:,} bytes past the end of the file")
        self.f.seek(n, 1)


def check_model_bin(path: Path, version: int, within: Path) -> None:
    """Refuse `path` unless it is a whole model.bin of binary `version`, every variable's bytes
    matching its shape and dtype, every alias naming a variable, nothing after the end."""
    with open_input(path, within) as f:
        f.seek(0, 2)
        r = Reader(f, path, f.tell())
        f.seek(0)
        if (found := r.take("I")) != version:
            raise r.fail(f"binary version {found}, not {version}")
        r.string()  # the spec's name
        r.take("I")  # its revision
        count = r.take("I")
        if count > MAX_VARIABLES:
            raise r.fail(f"{count:,} variables")
        names = set()
        for _ in range(count):
            names.add(name := r.string())
            rank = r.take("B")
            if rank > MAX_RANK:
                raise r.fail(f"variable {name[:60]!r} of rank {rank}")
            dims = [r.take("I") for _ in range(rank)]
            dtype, size = r.take("B"), r.take("I")
            if dtype >= len(ITEM_BYTES) or size != math.prod(dims) * ITEM_BYTES[dtype]:
                raise r.fail(f"variable {name[:60]!r} of {size:,} bytes, not its shape {dims}")
            r.skip(size)
        for _ in range(r.take("I")):
            r.string()
            if r.string() not in names:
                raise r.fail("an alias of no variable")
        if f.tell() != r.size:
            raise r.fail("bytes after the end of the model")

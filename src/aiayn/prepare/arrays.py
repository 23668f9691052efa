"""Writing a prepared dataset's `.npy` arrays atomically, whole or as a stream of chunks.

A stream is written without holding it: numpy's header leaves room for the length to grow
(it pads the shape to 21 digits), so the header is written for length 0, the chunks appended,
and the header written again for the real length over the first, at the same size. A text
larger than memory prepares so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from aiayn.run.atomic import atomic_path, atomic_write


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest dtype that holds every id of a vocabulary: uint16, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def save_array(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


def _header(f: BinaryIO, dtype: np.dtype, length: int) -> None:
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    np.lib.format.write_array_header_1_0(f, d)


class ArrayStream:
    """A 1-D `.npy` file being appended to; `append` takes chunks of any integer dtype."""

    def __init__(self, f: BinaryIO, dtype: np.dtype) -> None:
        self.f, self.dtype, self.length = f, np.dtype(dtype), 0
        _header(f, self.dtype, 0)
        self.data_start = f.tell()

    def append(self, chunk: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(chunk, dtype=self.dtype).tobytes())
        self.length += len(chunk)

    def finish(self) -> None:
        self.f.seek(0)
        _header(self.f, self.dtype, self.length)
        if self.f.tell() != self.data_start:
            raise RuntimeError(f"{self.length:,} elements: the .npy header outgrew its room")


@contextmanager
def array_streams(paths: dict[str, Path], dtype: np.dtype) -> Iterator[dict[str, ArrayStream]]:
    """Streams to the `.npy` files `paths` (by name), each renamed into place only when the
    block ends without an error; until then no file of that name is changed."""
    with ExitStack() as stack:
        streams = {}
        for name, path in paths.items():
            tmp = stack.enter_context(atomic_path(path))
            streams[name] = ArrayStream(stack.enter_context(open(tmp, "wb")), dtype)
        yield streams
        for stream in streams.values():
            stream.finish()

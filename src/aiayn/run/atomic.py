"""Files written whole or not at all: to a temporary file beside the destination, flushed to
disk, then renamed over it, so a crash or a full disk mid-write leaves the previous version."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# the temporary files of atomic_path, ".NAME.RANDOM.tmp": a killed write leaves one behind
LEFTOVER = re.compile(r"\..+\.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed to `path` when the block ends.

    A write that fails (a full disk: OSError, or torch.save's RuntimeError) is a ValueError
    naming the file; the previous version stays, and no temporary file is left.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ValueError(f"{path}: could not be written ({e.strerror or e})") from e
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; keep the usual mode
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        Path(tmp).unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        kept = "; the previous version is kept" if path.exists() else ""
        raise ValueError(f"{path}: could not be written ({reason}){kept}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary path beside `path`, then rename it to `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's run to paragraphs)."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

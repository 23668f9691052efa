"""A run directory (or any output folder) as the workplace of one process at a time.

Training holds an exclusive lock on the directory (`flock`, so a killed process never leaves
it held), and the holder clears the temporary files that killed writes left behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from aiayn.run.atomic import LEFTOVER
from aiayn.run.files import SNAPSHOTS
from aiayn.run.paths import refuse_link

LOCK = ".lock"
OWNER = ".aiayn-owner"  # names the aiayn command that made the folder (aiayn.run.folder)


def contents(folder: Path) -> list[str]:
    """The names in `folder` other than its lock and the note of who made it, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, OWNER))


def lock_holder(folder: Path) -> str | None:
    """The pid that holds `folder`'s lock now, or None when no process does."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no lock file (or a link, which _acquire refuses): nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder_pid(fd)
    finally:
        os.close(fd)  # closing releases a lock taken here
    return None


def clear_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files of writes that were killed before their rename."""
    removed = []
    for sub in (folder, folder / SNAPSHOTS):
        if sub.is_dir() and not sub.is_symlink():
            for p in sub.iterdir():
                if LEFTOVER.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


def holder_pid(fd: int) -> str:
    """The pid the holder of the lock file `fd` wrote into it."""
    return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"


def in_use(folder: Path, holder: str, option: str) -> ValueError:
    return ValueError(
        f"{option} {folder} is in use by another aiayn process (pid {holder}); wait for it to "
        f"end or choose another {option}"
    )


class RunLock:
    """Exclusive use of a run directory for as long as the `with` block lasts.

    The directories this lock created (the folder and any missing parents) are removed again
    if they are still empty at the end. New output folders are made through
    aiayn.run.folder.OutputFolder, which takes this lock.
    """

    def __init__(self, run_dir: str | Path, option: str = "--out") -> None:
        self.dir, self.option = Path(run_dir), option
        self.fd: int | None = None
        self.created: list[Path] = []  # deepest first

    def __enter__(self) -> RunLock:
        refuse_link(self.dir, self.option)
        self.created = missing_folders(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
            refuse_link(self.dir, self.option)  # made a link while we took the lock
            clear_leftovers(self.dir)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _acquire(self) -> None:
        path = self.dir / LOCK
        while True:
            fd = self._open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = holder_pid(fd)
                os.close(fd)
                raise in_use(self.dir, holder, self.option) from None
            # The holder before us may have removed the file after we opened it: retry on
            # the file that is there now, or two processes would each lock their own.
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)

    def _open(self, path: Path) -> int:
        """The lock file, opened without blocking (a FIFO there would wait for a writer)
        and refused unless it is a regular file: flock and truncate need one."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            if e.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):  # folder, link, socket
                raise
            raise self._not_a_file(path) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._not_a_file(path)
        return fd

    def _not_a_file(self, path: Path) -> ValueError:
        return ValueError(
            f"{path}: the lock file of {self.option} {self.dir} is not a regular file; "
            f"remove it, or choose another {self.option}"
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            (self.dir / LOCK).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None
        for folder in self.created:
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        self.created = []


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing

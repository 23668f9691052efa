"""The one way aiayn creates or replaces an output folder.

Every command that writes a folder (train's new run, prepare, each ablation run, import-hf,
export-hf, export-ct2, quantize) goes through `OutputFolder`, which:

- refuses a folder that is a link, or that leads out of the folder it must stay in (`within`);
- refuses a folder that another process holds (its lock), naming that process;
- refuses a folder holding files that this command did not write, saying how to go on;
- takes the folder's lock for the block (aiayn.run.lock.RunLock) and leaves a note
  (`.aiayn-owner`) naming the command, the proof that aiayn made what is in it;
- starts again in a folder the same command made and left unfinished (a killed export, a
  training that never reached a checkpoint, an ablation run cut short), emptying it first;
- on a failure, removes what the block created (files, folders, the note, the lock, the
  folder itself if it made it) and nothing that was there before.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from aiayn.run.lock import OWNER, RunLock, contents, in_use, lock_holder
from aiayn.run.paths import refuse_link
from aiayn.safeio import read_input_text

# Whether a folder the same command made may be emptied and written again: None if so, else
# why not (a training that reached a checkpoint is continued with --resume, not replaced).
Again = Callable[[Path], str | None]


def always(folder: Path) -> str | None:
    return None


def owner(folder: Path) -> str | None:
    """The command named by `folder`'s note, or None where there is no readable note."""
    note = folder / OWNER
    if note.is_symlink() or not note.is_file():
        return None
    try:
        return read_input_text(note, 64).strip() or None
    except ValueError:
        return None


def remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree (links inside it are
    removed, not followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class OutputFolder:
    """The folder `path`, made or taken over for `command` for as long as the block lasts.

    `option` names the setting the path came from in messages; `within`, when given, is the
    folder `path` must stay inside; `remedy` says how to go on when the folder holds files of
    someone else's; `again` decides whether an unfinished folder of the same command may be
    written anew; `keep_owner` leaves the note after success (a run directory or dataset that
    the same command may take over again), else it goes (a finished export is the user's).
    """

    def __init__(
        self,
        path: str | Path,
        command: str,
        option: str = "--out",
        within: str | Path | None = None,
        remedy: str | None = None,
        again: Again = always,
        keep_owner: bool = False,
    ) -> None:
        self.path, self.command, self.option = Path(path), command, option
        self.within = Path(within) if within is not None else None
        self.remedy = remedy or f"choose a new or empty {option}"
        self.again, self.keep_owner = again, keep_owner
        self.lock = RunLock(self.path, option)
        self.before: set[str] = set()
        self.marked = False

    def check(self) -> None:
        """A ValueError unless the folder could be taken now (`with` checks again)."""
        self.check_place()
        self.check_free()

    def __enter__(self) -> Path:
        self.check()
        self.lock.__enter__()
        try:
            self.check_free()  # filled while we took the lock
            self.take()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.path

    def check_place(self) -> None:
        refuse_link(self.path, self.option)
        if self.within is not None:
            where = self.path.parent.resolve() / self.path.name
            if not where.is_relative_to(self.within.resolve()):
                raise ValueError(
                    f"{self.option} {self.path} leads out of {self.within} (to {where}); refused"
                )
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.option} {self.path} is not a folder; name a folder to write")

    def check_free(self) -> None:
        """A ValueError unless the folder is absent, empty, or this command's to write again."""
        if self.lock.fd is None and self.path.is_dir() and (holder := lock_holder(self.path)):
            raise in_use(self.path, holder, self.option)
        names = contents(self.path)
        if not names:
            return
        made_by = owner(self.path)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        if made_by != self.command:
            by = f"aiayn {made_by}'s" if made_by else f"not aiayn {self.command}'s"
            raise ValueError(
                f"{self.option} {self.path} already holds files ({shown}), {by}; {self.remedy}"
            )
        if (why := self.again(self.path)) is not None:
            raise ValueError(f"{self.option} {self.path}: {why}")

    def take(self) -> None:
        """Empty an unfinished folder of this command's, note the owner, and remember what
        was there (the lock and note) so that a failure removes only what came after."""
        for name in contents(self.path):
            remove(self.path / name)
        if owner(self.path) != self.command:
            note = self.path / OWNER
            if note.is_symlink() or note.is_dir():
                remove(note)
            note.write_text(f"{self.command}\n", encoding="utf-8")
            self.marked = True
        self.before = {p.name for p in self.path.iterdir()}

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if error is None:
                if not self.keep_owner:
                    (self.path / OWNER).unlink(missing_ok=True)
            elif self.again(self.path) is None:  # nothing worth keeping: undo what we made
                for p in self.path.iterdir():
                    if p.name not in self.before:
                        remove(p)
                if self.marked:
                    (self.path / OWNER).unlink(missing_ok=True)
        finally:
            self.lock.__exit__(kind, error, trace)

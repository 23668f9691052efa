"""A run directory as untrusted input: names read from its files (snapshots in the trainer
state, say) become paths only when they are plain file names, and no path, followed through
links, leads out of the directory, so a crafted run can make aiayn neither read nor delete a
file elsewhere. Nothing is written through a link either."""

from __future__ import annotations

import os
import re
from pathlib import Path

PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def inside(run_dir: str | Path, name: object) -> Path:
    """`run_dir / name`, refused unless `name` is a plain file name and the path, links
    followed, stays inside `run_dir`."""
    run_dir = Path(run_dir)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ValueError(f"{run_dir}: refused the file name {name!r}; expected a plain name")
    path = run_dir / name
    if path.is_symlink() or path.exists():
        target = path.resolve()
        if not target.is_relative_to(run_dir.resolve()):
            raise ValueError(f"{path}: a link out of its directory (to {target}); refused")
    return path


def refuse_link(path: Path, option: str) -> None:
    """A ValueError unless `path` is no link: aiayn writes nothing through one."""
    if path.is_symlink():
        raise ValueError(
            f"{option} {path} is a link (to {os.readlink(path)}); aiayn writes no output "
            f"through a link: name the folder itself"
        )

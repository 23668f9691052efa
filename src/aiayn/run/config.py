"""The config a run directory was trained with: `config.toml`, written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from aiayn.config import RunConfig
from aiayn.run.atomic import atomic_write_text
from aiayn.run.files import CONFIG
from aiayn.run.paths import inside


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, tomli_w.dumps(cfg.to_dict()))


def load_config(path: str | Path) -> RunConfig:
    return RunConfig.load(path)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run directory was trained with."""
    path = inside(run_dir, CONFIG)
    if not path.exists():
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG})")
    return load_config(path)

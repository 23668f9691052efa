"""Run directories: weights in safetensors, config in TOML, trainer state without pickle.

Every file is written whole or not at all: to a temporary file beside it, flushed to disk,
then renamed over the old one, so a crash mid-write leaves the previous version readable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aiayn.config import RunConfig
from aiayn.configfile import load_toml

CONFIG, TOKENIZER, STATE = "config.toml", "tokenizer.json", "trainer_state.pt"
METRICS, LOSS_PNG = "metrics.jsonl", "loss.png"
MODEL = "model.safetensors"  # the latest weights, which trainer_state.pt continues from
BEST = "best.safetensors"  # the weights of the best validation score
AVERAGE = "average.safetensors"  # the mean of the last train.average_last checkpoints
WEIGHTS = {"model": MODEL, "best": BEST, "average": AVERAGE}


def pick_weights(run_dir: Path, name: str | None = None) -> Path:
    """The weights file to decode with: `name` if given, else average, best, then latest."""
    if name is not None:
        if name not in WEIGHTS:
            raise ValueError(f"--weights {name!r} is unknown; expected one of {', '.join(WEIGHTS)}")
        path = run_dir / WEIGHTS[name]
        if not path.exists():
            raise ValueError(f"{path}: no such weights file in the run directory")
        return path
    for file in (AVERAGE, BEST, MODEL):
        if (run_dir / file).exists():
            return run_dir / file
    raise ValueError(f"{run_dir}: no weights file ({MODEL}) in this directory")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary path beside `path`, then rename it to `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; keep the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor (tied embeddings) kept under its first name."""
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t.detach().contiguous().cpu()
    return out


def save_weights(model: nn.Module, path: str | Path) -> None:
    save_tensors(unique_state(model), path)


def save_tensors(state: dict[str, torch.Tensor], path: str | Path) -> None:
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`; missing, extra or mis-shaped tensors are errors."""
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such weights file") from None
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    load_checked(model, state, path)


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load `state` into `model` after checking that names and shapes match exactly."""
    expected = unique_state(model)
    for name in expected:
        if name not in state:
            raise ValueError(f"{path}: tensor {name!r} is missing")
        if state[name].shape != expected[name].shape:
            raise ValueError(
                f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]!r}")
    model.load_state_dict(state, strict=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, tomli_w.dumps(cfg.to_dict()))


def load_config(path: str | Path) -> RunConfig:
    return RunConfig.from_dict(load_toml(path))


def save_state(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """Trainer state, unpickled with `weights_only=True`: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such trainer state") from None
    except Exception as e:  # torch raises UnpicklingError and others for refused content
        raise ValueError(f"{path}: refused or unreadable trainer state ({e})") from None


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several checkpoints' tensors (paper §6.1)."""
    first = load_file(str(paths[0]))
    total = {k: v.double() for k, v in first.items()}
    for p in paths[1:]:
        for k, v in load_file(str(p)).items():
            total[k] += v.double()
    return {k: (v / len(paths)).to(first[k].dtype) for k, v in total.items()}

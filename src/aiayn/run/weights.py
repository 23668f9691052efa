"""Weights in safetensors, read lean and checked before a model takes them; torch files
unpickled only as plain tensors and containers.

Every file is written whole or not at all (aiayn.run.atomic), so a crash mid-write leaves
the previous version readable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from aiayn.run.atomic import atomic_write, first_line
from aiayn.safeio import InputError, check_input, open_input


def unique_state(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor (tied embeddings) kept under its first name,
    leaving out the entries under the prefixes `skip` (int8 layers hold no plain tensors)."""
    seen: set[int] = set()
    out = {}
    for name, t in model.state_dict().items():
        if not name.startswith(skip) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t.detach().contiguous().cpu()
    return out


def save_weights(model: nn.Module, path: str | Path) -> None:
    save_tensors(unique_state(model), path)


def save_tensors(
    state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`; missing, extra or mis-shaped tensors are errors."""
    load_checked(model, read_tensors(path), path)


# safetensors' dtype names; a file's other dtypes are refused when a tensor is read
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip


# the dtypes weights are computed in: a cast from integers would be silent nonsense, and
# float8 has no arithmetic (not even isfinite) on most devices
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
WEIGHT_NAMES = "floating point (float32, float16, bfloat16 or float64)"


class SafetensorsFile(Mapping[str, torch.Tensor]):
    """A safetensors file's tensors by name, each read from the file when asked for.

    The `safetensors` library checks the header (offsets inside the file, shapes that fit
    them); the bytes are then read with plain file reads into the tensor that keeps them.
    Reading through the library maps the file, and the pages it touches stay resident while
    loading: the whole checkpoint again beside its copy (measured: 1.8x its size).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists() and not path.is_symlink():
            raise ValueError(f"{path}: no such weights file")
        try:
            with safe_open(str(check_input(path)), framework="pt") as f:
                names = set(f.keys())
            with open_input(path) as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
        except InputError:
            raise
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        self.start = 8 + size
        self.entries = {name: header[name] for name in sorted(names)}
        self.metadata: dict[str, str] = header.get("__metadata__") or {}  # str to str, checked

    def __getitem__(self, name: str) -> torch.Tensor:
        entry = self.entries[name]
        if entry["dtype"] not in DTYPES:
            raise ValueError(f"{self.path}: tensor {name} has dtype {entry['dtype']}, unsupported")
        begin, end = entry["data_offsets"]
        tensor = torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
        buffer = tensor.reshape(-1).view(torch.uint8).numpy()
        with open_input(self.path) as fh:
            fh.seek(self.start + begin)
            if fh.readinto(buffer) != end - begin:
                raise ValueError(f"{self.path}: tensor {name} is cut short")
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or damaged file is a ValueError."""
    tensors = SafetensorsFile(Path(path))
    return {name: tensors[name] for name in tensors}


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load `state` into `model` after checking names, shapes and values (see check_tensors)."""
    check_tensors(state, {n: t.shape for n, t in unique_state(model).items()}, path)
    model.load_state_dict(state, strict=False)


def finite(t: torch.Tensor) -> bool:
    """Whether every value is finite, checked a block at a time: `isfinite` of a whole bf16
    embedding makes float32 and bool copies of it (0.7x a bf16 checkpoint's size at once)."""
    return all(bool(torch.isfinite(block).all()) for block in t.reshape(-1).split(1 << 20))


def check_tensors(state: object, shapes: dict[str, torch.Size], path: str | Path) -> None:
    """Refuse `state` unless it holds exactly the tensors named in `shapes`, of those shapes,
    floating-point (a cast from integers would be silent nonsense) and finite."""
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ValueError(f"{path}: the weights are not a table of tensors")
    for name, shape in shapes.items():
        if name not in state:
            raise ValueError(f"{path}: tensor {name!r} is missing")
        t = state[name]
        if t.shape != shape:
            raise ValueError(
                f"{path}: tensor {name!r} has shape {tuple(t.shape)}, "
                f"the model expects {tuple(shape)}"
            )
        if t.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} is {t.dtype}; expected {WEIGHT_NAMES}")
        if not finite(t):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{path}: tensor {name!r} has {bad:,} non-finite values (NaN or inf)")
    extra = sorted(set(state) - set(shapes))
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]!r}")


def load_plain(path: str | Path, what: str) -> Any:
    """A torch file unpickled with `weights_only=True`; refused content is a one-line error."""
    try:
        with open_input(path) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as e:  # torch raises UnpicklingError and others for refused content
        lines = [line.strip() for line in str(e).splitlines()]
        # torch's message is a paragraph that ends in advice to unpickle with code: keep the
        # line that says what was refused
        reason = next((line for line in lines if "WeightsUnpickler error" in line), None)
        raise ValueError(
            f"{path}: refused or unreadable {what} ({reason or first_line(e)})"
        ) from None

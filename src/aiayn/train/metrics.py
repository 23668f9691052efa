"""metrics.jsonl: one JSON object per line, each with the step it was measured at.

Lines are appended, so a write cut short (a full disk, a kill) can leave half a last line:
a reader drops it and says so; any other bad line is an error naming the file and line.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiayn.config import TrainConfig
from aiayn.run.atomic import atomic_write_text
from aiayn.safeio import finite_number, read_input

MAX_METRICS_BYTES = 1 << 30  # a line of ~200 bytes per logged step: millions of steps


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], bool]:
    """(records, whether a torn last line was dropped) of a metrics file."""
    path = Path(path)
    lines = read_input(path, MAX_METRICS_BYTES).split(b"\n")
    records: list[dict[str, Any]] = []
    torn = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            if number == len(lines):  # no newline after it: the last write was cut short
                torn = True
                continue
            raise ValueError(f"{path}: line {number} is not valid JSON ({e})") from None
        step = record.get("step") if isinstance(record, dict) else None
        if type(step) is not int or step < 0 or not finite_number(step):
            raise ValueError(f"{path}: line {number} is not an object with a step (an integer)")
        for key, value in record.items():
            # the writer logs only numbers, and null for a non-finite one (to_line)
            if value is not None and not finite_number(value):
                raise ValueError(
                    f"{path}: line {number}: field {key[:100]!r} is {repr(value)[:100]}; "
                    "expected a finite number or null"
                )
        records.append(record)
    return records, torn


def to_line(record: dict[str, Any]) -> str:
    """One JSON line; non-finite floats become null (JSON has no NaN)."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean) + "\n"


def append_metric(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record; a failed write is cut back off, so the file stays whole."""
    data = to_line(record).encode("utf-8")
    with open(path, "ab", buffering=0) as f:
        start = f.tell()
        try:
            while data:
                data = data[f.write(data) :]
        except OSError as e:
            with contextlib.suppress(OSError):  # else a reader drops the torn line
                f.truncate(start)
            raise ValueError(f"{path}: could not be written ({e.strerror or e})") from e


def forget_after(path: Path, step: int, log: Callable[[str], None]) -> None:
    """Drop the metrics of steps after `step`, which a resumed run takes again, and a torn
    last line."""
    if path.exists():
        records, torn = read_metrics(path)
        if torn:
            log(f"{path}: dropped its last line, cut short by an interrupted write")
        kept = [r for r in records if r["step"] <= step]
        atomic_write_text(path, "".join(to_line(r) for r in kept))


def progress_line(record: dict[str, Any], t: TrainConfig, seconds: float) -> str:
    """The bar's figures as one line, for logs that are not a terminal: the ETA from the
    pace of the last `t.log_every` steps."""
    step, max_steps = record["step"], t.max_steps
    left = (max_steps - step) * seconds / t.log_every
    if t.max_minutes:
        left = min(left, max(60 * t.max_minutes - record["elapsed_s"], 0.0))
    eta = f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
    return (
        f"step {step:,}/{max_steps:,}  loss {record['loss']:.4f}  lr {record['lr']:.3g}  "
        f"{record['tokens_per_s']:,.0f} tok/s  ETA {eta}"
    )


class TensorBoardLog:
    """The logged scalars (loss, lr, tokens/s, validation figures) as TensorBoard event files
    in `folder`, each flushed as it is written, so a crashed run keeps what it logged."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "train.tensorboard = true needs the tensorboard package: "
                "pip install 'aiayn[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(folder))

    def write(self, record: dict[str, Any]) -> None:
        for name, value in record.items():
            if name not in ("step", "epoch") and isinstance(value, int | float):
                self.writer.add_scalar(name, value, record["step"])
        self.writer.flush()

"""The trainer state saved in trainer_state.pt, checked field by field before it is used.

`torch.load(weights_only=True)` admits only tensors and plain containers, but a crafted file
can still hold a string where a name goes or -5 where a step goes: every field is checked
for type and range here, and snapshot names must be the trainer's own (step_########).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from aiayn.train.runtime import check_scaler_state

SNAPSHOT_NAME = re.compile(r"step_\d{8}\.safetensors")
COUNTERS = ("step", "epoch", "batch", "bad_evals", "bad_steps")
TABLES = ("model", "optimizer", "scheduler")
OPTIONAL = ("scaler",)  # fp16's gradient scale: absent from states saved before it existed


def new_state() -> dict[str, Any]:
    """The state of a run that has not taken a step."""
    return {
        "step": 0,
        "epoch": 0,
        "batch": 0,
        "elapsed": 0.0,
        "best": None,
        "bad_evals": 0,
        "bad_steps": 0,
        "snapshots": [],
    }


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _rng_list(v: object) -> bool:
    states = [v] if isinstance(v, torch.Tensor) else v  # one tensor: saved by older versions
    return isinstance(states, list) and all(
        isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in states
    )


def check_state(state: object, path: str | Path) -> dict[str, Any]:
    """`state` if every field has the type and range the trainer gives it; else a ValueError
    naming the file and the field."""

    def refuse(field: str, expected: str) -> None:
        value = state[field]
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        raise ValueError(f"{path}: field {field!r} is {shown[:60]}; expected {expected}")

    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a trainer state (a table of fields)")
    expected = {*new_state(), *TABLES, "rng_torch", "rng_cuda"}
    for field in sorted(expected - set(state)):
        raise ValueError(f"{path}: field {field!r} is missing")
    for field in sorted(set(state) - expected - set(OPTIONAL)):
        raise ValueError(f"{path}: unexpected field {field!r}")
    for field in COUNTERS:
        if not (_is_int(state[field]) and state[field] >= 0):
            refuse(field, "an integer >= 0")
    if not (_is_number(state["elapsed"]) and state["elapsed"] >= 0):
        refuse("elapsed", "a finite number of seconds >= 0")
    if not (state["best"] is None or _is_number(state["best"])):
        refuse("best", "a finite number or None")
    names = state["snapshots"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        refuse("snapshots", "a list of file names")
    for name in names:
        if not SNAPSHOT_NAME.fullmatch(name):
            refuse("snapshots", f"names of the form step_00001000.safetensors, not {name!r}")
    for field in TABLES:
        if not isinstance(state[field], dict):
            refuse(field, "a table")
    if "scaler" in state and (problem := check_scaler_state(state["scaler"])):
        refuse("scaler", problem)
    if not _rng_list(state["rng_torch"]):
        refuse("rng_torch", "a list of random generator states (uint8 tensors)")
    if not (isinstance(state["rng_cuda"], list) and _rng_list(state["rng_cuda"])):
        refuse("rng_cuda", "a list of random generator states (uint8 tensors)")
    return state

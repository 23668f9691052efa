"""The trainer state saved in trainer_state.pt, checked field by field before it is used.

`torch.load(weights_only=True)` admits only tensors and plain containers, but a crafted file
can still hold a string where a name goes or -5 where a step goes: every field is checked
for type and range here, and snapshot names must be the trainer's own (step_########).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from aiayn.run.weights import WEIGHT_DTYPES
from aiayn.safeio import finite_number
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
    if not (finite_number(state["elapsed"]) and state["elapsed"] >= 0):
        refuse("elapsed", "a finite number of seconds >= 0")
    if not (state["best"] is None or finite_number(state["best"])):
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


ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # per parameter, its shape
INT_LIMIT = 1 << 53  # a step count, exact as a float too


def unlike(saved: object, live: object, where: str) -> str | None:
    """Why `saved` cannot stand where the trainer's own `live` value does (None: it can): the
    same kinds, numbers finite, lists of the same length, tables with no key `live` lacks."""
    if isinstance(live, bool) or live is None:  # None: a flag torch decides later
        ok = isinstance(saved, bool) or saved is live
    elif isinstance(live, int | float):
        ok = finite_number(saved) and (not isinstance(live, int) or _is_int(saved))
        ok = ok and abs(saved) < INT_LIMIT
    elif isinstance(live, str):
        ok = isinstance(saved, str)
    elif isinstance(live, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and (saved.shape, saved.dtype) == (
            live.shape,
            live.dtype,
        )
    elif isinstance(live, list | tuple):
        if not (isinstance(saved, list | tuple) and len(saved) == len(live)):
            return f"{where} is not a list of {len(live)}"
        return next(
            (
                p
                for i, (s, v) in enumerate(zip(saved, live, strict=True))
                if (p := unlike(s, v, f"{where}[{i}]"))
            ),
            None,
        )
    elif isinstance(live, dict):
        if not isinstance(saved, dict):
            return f"{where} is not a table"
        if extra := sorted(map(str, set(saved) - set(live))):
            return f"{where} holds the unexpected key {extra[0][:40]!r}"
        return next(
            (p for k, v in saved.items() if (p := unlike(v, live[k], f"{where}.{k}"))), None
        )
    else:
        ok = False
    return None if ok else f"{where} is {type(saved).__name__}, expected {type(live).__name__}"


def check_tables(
    state: dict[str, Any],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    path: str | Path,
) -> None:
    """Refuse, by field, a saved optimizer or schedule state that does not fit this trainer's:
    torch's own load_state_dict takes any table, and the first step then fails far from the
    file (a moment's shape mismatch) or the resume crashes on a string where a step goes."""
    problem = unlike(state["scheduler"], sched.state_dict(), "scheduler") or optimizer_problem(
        state["optimizer"], model, opt
    )
    if problem:
        raise ValueError(f"{path}: field {problem}; not this run's trainer state")


def optimizer_problem(
    saved: object, model: torch.nn.Module, opt: torch.optim.Optimizer
) -> str | None:
    live = opt.state_dict()["param_groups"]
    if not (isinstance(saved, dict) and set(saved) == {"state", "param_groups"}):
        return "optimizer is not a table of state and param_groups"
    groups = saved["param_groups"]
    if not (isinstance(groups, list) and len(groups) == len(live)):
        return f"optimizer.param_groups is not a list of {len(live)}"
    params: list[object] = []
    for i, (group, own) in enumerate(zip(groups, live, strict=True)):
        if not (isinstance(group, dict) and isinstance(group.get("params"), list)):
            return f"optimizer.param_groups[{i}] is not a table with params"
        if len(group["params"]) != len(own["params"]):
            return f"optimizer.param_groups[{i}].params is not a list of {len(own['params'])}"
        params += group["params"]
        rest = {k: v for k, v in group.items() if k != "params"}
        if problem := unlike(rest, own, f"optimizer.param_groups[{i}]"):
            return problem
    flat = [p for g in opt.param_groups for p in g["params"]]
    shapes = {i: p.shape for i, p in enumerate(flat)} | {
        n: p.shape for n, p in model.named_parameters()
    }
    if not isinstance(saved["state"], dict):
        return "optimizer.state is not a table"
    for key, entry in saved["state"].items():
        where = f"optimizer.state[{str(key)[:40]!r}]"
        if key not in params or key not in shapes:
            return f"{where} names no parameter of the model"
        if problem := moments_problem(entry, shapes[key], where):
            return problem
    return None


def moments_problem(entry: object, shape: torch.Size, where: str) -> str | None:
    """Why one parameter's Adam state (its step, its moments) does not fit it."""
    if not isinstance(entry, dict):
        return f"{where} is not a table"
    for name, value in entry.items():
        if name == "step":
            step = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if not (finite_number(step) and 0 <= step < INT_LIMIT):
                return f"{where}.step is not a step count"
        elif name in ADAM_STATE:
            if not (
                isinstance(value, torch.Tensor)
                and value.shape == shape
                and value.dtype in WEIGHT_DTYPES
                and bool(torch.isfinite(value).all())
            ):
                return f"{where}.{name} is not a finite tensor of shape {tuple(shape)}"
        else:
            return f"{where} holds the unexpected key {str(name)[:40]!r}"
    return None

"""A variant's result.json, read back by an interrupted study as untrusted input: a regular
file inside the variant's folder, every field of the type and range `run_variant` gives it,
so that a damaged or foreign file is one line naming it and the field, not a crash in the
report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiayn.safeio import finite_number, read_input_json

RESULT = "result.json"
MAX_RESULT_BYTES = 16 << 20  # a validation curve of a point per evaluation


def _count(v: object) -> bool:
    return type(v) is int and v >= 0


def _score(v: object) -> bool:
    return v is None or finite_number(v)


def _curve(v: object) -> bool:
    return isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and _count(p[0]) and finite_number(p[1]) for p in v
    )


FIELDS = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "group": (lambda v: isinstance(v, str), "a string"),
    "set": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "strings"),
    "paper": (lambda v: isinstance(v, str), "a string"),
    "seed": (lambda v: type(v) is int, "an integer"),
    "train_minutes": (lambda v: finite_number(v) and v >= 0, "minutes >= 0"),
    "minutes": (lambda v: finite_number(v) and v >= 0, "minutes >= 0"),
    "val_nll": (finite_number, "a finite number"),
    "steps": (_count, "an integer >= 0"),
    "curve": (_curve, "a list of [step, loss] pairs"),
    "val_bleu": (_score, "a finite number or null"),
    "test_bleu": (_score, "a finite number or null"),
    "parameters": (_count, "an integer >= 0"),
}


def check_result(result: object, name: str, where: str | Path) -> dict[str, Any]:
    """`result` if it is variant `name`'s result with every field as a study writes it."""
    if not isinstance(result, dict):
        raise ValueError(f"{where}: not a JSON object; expected a variant's result")
    for field in sorted(set(FIELDS) - set(result)):
        raise ValueError(f"{where}: field {field!r} is missing")
    for field in sorted(set(result) - set(FIELDS)):
        raise ValueError(f"{where}: unexpected field {field[:40]!r}")
    for field, (ok, expected) in FIELDS.items():
        if not ok(result[field]):
            raise ValueError(f"{where}: field {field!r} is not {expected}")
    if result["name"] != name:
        raise ValueError(f"{where}: the result of {result['name'][:60]!r}, not of {name!r}")
    return result


def read_result(folder: Path, name: str) -> dict[str, Any] | None:
    """The result saved in the variant folder `folder`, None if there is none yet."""
    path = folder / RESULT
    if not path.exists() and not path.is_symlink():
        return None
    return check_result(read_input_json(path, MAX_RESULT_BYTES, within=folder), name, path)

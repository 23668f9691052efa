"""Config files by format version. A file of version 2 says so at its top (`version = 2`), and
aiayn writes it into every run directory; a file without it was written before and is version
1, read here as the version-2 file that means the same, with one notice line per field whose
name or reading changed.

What version 1 wrote otherwise:
- `data.max_len`, one name for three lengths: the longest training pair kept (translation),
  the block length (language models), the truncation length (classifiers);
- `train.lr` under the noam schedule, a multiplier of the paper's rate, not the peak rate;
  version 2 keeps that multiplier, exactly, as `train.noam_scale`;
- `model.attn_impl`, which is how this machine runs attention, now `train.attn_impl`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiayn.models.config import ModelConfig

VERSION = 2
# what version 1's data.max_len held, by model.arch
MAX_LEN_OF = {
    "encoder_decoder": "max_pair_len",
    "decoder_only": "block_size",
    "encoder_classifier": "truncate_len",
}
V1_LR = 1.0  # version 1's train.lr when unset: under cosine, the peak rate itself


def file_version(data: dict[str, Any]) -> int:
    """The format version a parsed config declares (1 when it declares none); a version this
    aiayn does not know is refused."""
    version = data.get("version", 1)
    if type(version) is not int or version < 1:
        raise ValueError(f"version={version!r} is invalid; expected 1 or {VERSION}")
    if version > VERSION:
        raise ValueError(
            f"version={version}: this aiayn reads config versions 1 to {VERSION}; "
            "a newer aiayn wrote the file"
        )
    return version


def upgrade(data: dict[str, Any], notice: Callable[[str], None]) -> dict[str, Any]:
    """Version-1 tables (no `version` key) as version 2 reads them with the same meaning;
    malformed tables are passed on for the dataclasses to name."""
    tables = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    model, data_t, train = (tables.get(name, {}) for name in ("model", "data", "train"))
    if not all(isinstance(t, dict) for t in (model, data_t, train)):
        return tables
    if "attn_impl" in model:  # a value of train's own wins
        train = {"attn_impl": model.pop("attn_impl"), **train}
    arch = model.get("arch", ModelConfig.arch)
    if "max_len" in data_t and arch in MAX_LEN_OF:
        name, value = MAX_LEN_OF[arch], data_t.pop("max_len")
        data_t[name] = value
        notice(
            f"version-1 config: data.max_len={value!r} read as data.{name}={value!r} "
            f"(model.arch={arch}); version 2 writes `version = 2` and data.{name}"
        )
    schedule = train.get("schedule", "noam")
    if schedule == "noam" and "lr" in train:
        scale = train.pop("lr")
        train["noam_scale"] = scale
        notice(
            f"version-1 config: train.lr={scale!r} under noam multiplied the paper's rate: "
            f"read as train.noam_scale={scale!r}; version 2 writes `version = 2` and train.lr "
            "as the peak rate (noam_scale * d_model^-0.5 * warmup^-0.5), or keeps noam_scale"
        )
    elif schedule != "noam" and "lr" not in train:
        train["lr"] = V1_LR
    for name, table in (("model", model), ("data", data_t), ("train", train)):
        if table or name in tables:
            tables[name] = table
    return tables

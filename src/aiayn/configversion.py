"""Config files by format version. A file of version 2 says so at its top (`version = 2`), and
aiayn writes it into every run directory; a file without it was written before and is version
1, read here as the version-2 file that means the same, with one notice line per field whose
name or reading changed.

What version 1 wrote otherwise:
- `data.max_len`, one name for three lengths: the longest training pair kept (translation),
  the block length (language models), the truncation length (classifiers);
- `train.lr` under the noam schedule, a multiplier of the paper's rate, not the peak rate;
  version 2 keeps that multiplier, exactly, as `train.noam_scale`;
- `data.train` and `data.valid`, one name for two kinds of file: a language model's plain text,
  a classifier's TSV (now `train_text`/`valid_text` and `train_tsv`/`valid_tsv`); a translation
  read neither, nor did the other families read translation's file fields, which version 1
  wrote into every run directory and version 2 drops;
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
# what version 1's data.train and data.valid held, by model.arch
FILES_OF = {
    "decoder_only": {"train": "train_text", "valid": "valid_text"},
    "encoder_classifier": {"train": "train_tsv", "valid": "valid_tsv"},
}
# version 1's file fields of translation, which only encoder_decoder read
PAIR_FILES = ("train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt")
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


def refuse_version_1_names(data: dict[str, Any]) -> None:
    """Refuse a version-1 field name in version-2 tables (a `--set data.max_len=...` on a file
    that says `version = 2`, say), naming what version 2 calls it."""
    model, data_t = data.get("model"), data.get("data")
    arch = model.get("arch", ModelConfig.arch) if isinstance(model, dict) else ModelConfig.arch
    if not isinstance(arch, str) or arch not in MAX_LEN_OF:
        return  # a family version 1 did not know: ModelConfig names a bad one
    renamed = {
        ("model", "attn_impl"): "train.attn_impl",
        ("data", "max_len"): f"data.{MAX_LEN_OF[arch]}",
        ("data", "train"): _files_for(arch, "train"),
        ("data", "valid"): _files_for(arch, "valid"),
    }
    for (name, key), new in renamed.items():
        table = model if name == "model" else data_t
        if isinstance(table, dict) and key in table:
            raise ValueError(
                f"unknown key {name}.{key} in a version-2 config: version 1's name; "
                f"version 2 reads {new} (model.arch={arch})"
            )


def _files_for(arch: str, old: str) -> str:
    """The version-2 fields of version 1's data.train or data.valid (`old`) for `arch`."""
    if arch in FILES_OF:
        return f"data.{FILES_OF[arch][old]}"
    # a translation reads a pair of files, never version 1's data.train or data.valid
    return " and ".join(f"data.{name}" for name in PAIR_FILES if name.startswith(old))


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
    if "max_len" in data_t and isinstance(arch, str) and arch in MAX_LEN_OF:
        name, value = MAX_LEN_OF[arch], data_t.pop("max_len")
        if name in data_t:
            notice(superseded("data", "max_len", value, name, data_t[name]))
        else:
            data_t[name] = value
            notice(
                f"version-1 config: data.max_len={value!r} read as data.{name}={value!r} "
                f"(model.arch={arch}); version 2 writes `version = 2` and data.{name}"
            )
    _upgrade_files(data_t, arch, notice)
    schedule = train.get("schedule", "noam")
    if schedule == "noam" and "lr" in train and "noam_scale" in train:
        notice(superseded("train", "lr", train.pop("lr"), "noam_scale", train["noam_scale"]))
    elif schedule == "noam" and "lr" in train:
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


def superseded(table: str, old: str, value: Any, new: str, kept: Any) -> str:
    """The notice for a version-1 field dropped because its version-2 name is set too (by
    `--set` on a version-1 file, or written beside it): the name the user chose wins."""
    return (
        f"version-1 config: {table}.{old}={value!r} dropped: {table}.{new}={kept!r}, "
        "its version-2 name, is set too"
    )


def _upgrade_files(data_t: dict[str, Any], arch: Any, notice: Callable[[str], None]) -> None:
    """Version 1's data.train and data.valid under the name of what they hold for `arch`; the
    file fields `arch` did not read are dropped (with a notice where they named a file)."""
    if not isinstance(arch, str) or arch not in MAX_LEN_OF:
        return  # not a family of version 1: ModelConfig names the arch
    renames = FILES_OF.get(arch, {})
    own = PAIR_FILES if arch == "encoder_decoder" else ()
    for old in ("train", "valid", *PAIR_FILES):
        if old not in data_t or old in own:
            continue
        value = data_t.pop(old)
        if old in renames and renames[old] in data_t:
            notice(superseded("data", old, value, renames[old], data_t[renames[old]]))
        elif old in renames:
            data_t[renames[old]] = value
            notice(
                f"version-1 config: data.{old}={value!r} read as data.{renames[old]}={value!r} "
                f"(model.arch={arch}); version 2 writes `version = 2` and data.{renames[old]}"
            )
        elif value != "":
            notice(f"version-1 config: data.{old}={value!r} is not read by {arch}: dropped")

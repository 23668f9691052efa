"""The rules every Hugging Face config translation follows, trusting nothing: an allow-list of
keys per format, and values read with their types checked (see aiayn.interop.hf_config)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
}
MAX_CONFIG_BYTES = 1 << 20
INT_LIMIT = 1 << 31  # every count or id of a model config fits in 32 bits
# Keys of any format that say nothing about what the model computes.
BOOKKEEPING = {
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype",
    "use_cache", "initializer_range", "init_std", "label2id", "bos_token_id", "eos_token_id",
    "decoder_start_token_id", "forced_eos_token_id", "forced_bos_token_id", "max_length",
    "num_beams", "early_stopping", "length_penalty", "min_length", "problem_type",
    "classifier_dropout", "gradient_checkpointing", "output_past", "task_specific_params",
    "finetuning_task", "tokenizer_class", "prefix", "return_dict", "output_attentions",
    "output_hidden_states", "torchscript", "chunk_size_feed_forward", "is_encoder_decoder",
    "tie_encoder_decoder", "num_labels", "id2label", "pad_token_id", "vocab_size", "model_type",
}  # fmt: skip


@dataclass(frozen=True)
class Rules:
    """What a format's config may hold beyond BOOKKEEPING: `mapped` keys are read by its
    translation, `harmless` ones change only training (dropout aiayn lacks, say), and each
    `fixed` key must have one of the values given."""

    mapped: frozenset[str]
    harmless: frozenset[str] = frozenset()
    fixed: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def short(value: object) -> str:
    """`value` as a message shows it: a 400-digit integer is not printed whole."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


class HFConfig:
    """A parsed config.json whose values are read with their types checked."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path

    def need(self, key: str, kind: type, low: float | None = None) -> Any:
        if self.data.get(key) is None:
            raise ValueError(f"{self.path}: key {key!r} is missing")
        return self.get(key, kind, None, low)

    def get(
        self,
        key: str,
        kind: type,
        default: Any,
        low: float | None = None,
        high: float | None = None,
    ) -> Any:
        """The value of `key` (absent or null: `default`), refused unless of type `kind` and,
        for a number, within [low, high) (an integer: within 32 bits whatever the bounds)."""
        value = self.data.get(key)
        if value is None:
            return default
        ok = {
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        }.get(kind, lambda v: isinstance(v, kind))(value)
        if not ok or (kind is float and not math.isfinite(value)):
            raise ValueError(f"{self.path}: {key}={short(value)} is not {kind.__name__}")
        if kind is int:
            low = max(-INT_LIMIT, low) if low is not None else -INT_LIMIT
            high = min(INT_LIMIT, high) if high is not None else INT_LIMIT
        if (low is not None and value < low) or (high is not None and value >= high):
            bounds = f"{low} <= {key}" if low is not None else key
            raise ValueError(
                f"{self.path}: {key}={short(value)} is out of range; expected "
                f"{bounds}{f' < {high}' if high is not None else ''}"
            )
        return value

    def check(self, rules: Rules) -> None:
        known = BOOKKEEPING | rules.mapped | rules.harmless | set(rules.fixed)
        for key in sorted(self.data):
            if key not in known:
                kind = self.data["model_type"]
                raise ValueError(
                    f"{self.path}: key {key!r} is unknown to aiayn's {kind} importer; refused "
                    "rather than guessed at"
                )
        for key, allowed in rules.fixed.items():
            if key in self.data and self.data[key] not in allowed:
                raise ValueError(
                    f"{self.path}: {key}={short(self.data[key])} is not supported (aiayn "
                    f"represents {' or '.join(map(repr, allowed))})"
                )

    def pad_id(self) -> int:
        """The padding id, one of the vocabulary's (unset: 0)."""
        return self.get("pad_token_id", int, 0, 0, self.need("vocab_size", int, 1))

    def activation(self, key: str, default: str) -> str:
        name = self.get(key, str, default)
        if name not in ACTIVATIONS:
            raise ValueError(
                f"{self.path}: {key}={name!r} has no aiayn equivalent; known: {list(ACTIVATIONS)}"
            )
        return ACTIVATIONS[name]

    def labels(self) -> list[str] | None:
        """The class names of id2label in id order, or None."""
        raw = self.get("id2label", dict, None)
        if raw is None:
            return None
        if not all(isinstance(v, str) for v in raw.values()) or sorted(raw) != sorted(
            str(i) for i in range(len(raw))
        ):
            raise ValueError(f"{self.path}: id2label is not a table of ids 0..N-1 to names")
        return [raw[str(i)] for i in range(len(raw))]

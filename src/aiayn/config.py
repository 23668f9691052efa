"""A run's whole configuration: [model], [data], [train] and [decode] tables of one TOML file."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aiayn.configfile import apply_overrides, from_dict, load_toml, require
from aiayn.configversion import VERSION, file_version, refuse_version_1_names, upgrade
from aiayn.data.tokenizer import TOKENIZER_KINDS
from aiayn.decodeconfig import DecodeConfig
from aiayn.families import FAMILIES, family
from aiayn.models.config import ModelConfig
from aiayn.runtime.attention import ATTENTION_IMPLS

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("noam", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")
DECAYS = ("all", "matrices")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# the data lengths, one a family reads (its registry entry's data_length)
LENGTHS = ("max_pair_len", "block_size", "truncate_len", "tag_len")
DERIVED = ("vocab_size", "src_vocab_size", "pad_id", "n_classes")
# What a resumed run cannot change: what its weights and tokenizer are. The rest (how it
# trains, decodes, where its data lies) may change with --set, and config.toml says so.
RESUME_FIXED = {
    "model": {
        f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("dropout", "attn_dropout")
    },
    "data": {"tokenizer", "vocab_size", "joint_vocab", "lowercase", "end_token"},
    # what a fine-tuning trains and on what: its adapters' shapes and scale, its frozen tensors
    "train": {"init", "new_head", "freeze", "lora_rank", "lora_alpha", "lora_targets"},
}


@dataclass(frozen=True)
class DataConfig:
    # translation: line-aligned source and target files
    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    test_src: str = ""
    test_tgt: str = ""
    # language models: plain text
    train_text: str = ""
    valid_text: str = ""  # unset: the last valid_fraction of train_text is held out
    valid_fraction: float = 0.1
    # classifiers: TSV files, a header line and then text<TAB>label rows
    train_tsv: str = ""
    valid_tsv: str = ""
    tokenizer: str = "bpe"  # or "word", "char"
    vocab_size: int = 8000  # BPE merges stop, or the word list ends, at this many tokens
    joint_vocab: bool = True  # one tokenizer for both languages (needed to share embeddings)
    # translation: the longest training pair kept, in tokens a side (</s> or <s> counted);
    # longer pairs are dropped, with a count in the log
    max_pair_len: int = 100
    block_size: int = 100  # language models: each training sequence is this many tokens
    truncate_len: int = 100  # classifiers: a text's tokens past this many are cut off
    lowercase: bool = False  # translation restores case to the output (data/recase.py)
    # translation: a dataset written by `aiayn prepare` (token ids read from disk) to train
    # from instead of tokenizing train_src and train_tgt at each start
    prepared: str = ""
    # classifiers: </s> closes each text, as BERT's [SEP] (imported BERT runs set it)
    end_token: bool = False
    # taggers: words and their tags (aiayn.data.tagged), plain or gzipped, in tagged_format:
    # "conllu" (the tag in column tag_column: 4 UPOS, 5 XPOS) or "columns" (word<TAB>tag
    # lines, a blank line between sentences: CoNLL-2003 style)
    train_tagged: str = ""
    valid_tagged: str = ""
    tagged_format: str = "conllu"
    tag_column: int = 4  # 1-based, as the CoNLL-U documentation counts; conllu only
    tag_len: int = 128  # taggers: a sentence's subword tokens, <s> and </s> counted

    def __post_init__(self) -> None:
        self._check()
        formats = ("conllu", "columns")
        f = self.tagged_format
        require("data", "tagged_format", f, f in formats, f"one of {', '.join(formats)}")
        c = self.tag_column
        require("data", "tag_column", c, 2 <= c <= 10, "a CoNLL-U column in [2, 10]")

    def _check(self) -> None:
        for name in ("vocab_size", *LENGTHS):
            require(
                "data", name, getattr(self, name), getattr(self, name) > 0, "a positive integer"
            )
        f = self.valid_fraction
        require("data", "valid_fraction", f, 0 < f < 1, "in (0, 1)")
        require(
            "data",
            "tokenizer",
            self.tokenizer,
            self.tokenizer in TOKENIZER_KINDS,
            f"one of {', '.join(TOKENIZER_KINDS)}",
        )

    def length(self, arch: str) -> int:
        """The length model.arch = `arch` reads: max_pair_len, block_size or truncate_len."""
        return getattr(self, family(arch).data_length)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1
    max_steps: int = 100_000
    max_minutes: float = 0.0  # wall-clock budget; 0: none
    # tokens per batch, padding counted: source or target tokens of a translation's pairs
    # (§5.1), a classifier's texts, a language model's blocks (as many as fit, at least one)
    batch_tokens: int = 4096
    accumulate: int = 1  # gradient accumulation: optimizer steps every N batches
    optimizer: str = "adam"
    # The peak learning rate, under every schedule. Unset under noam: the paper's peak,
    # d_model^-0.5 * warmup^-0.5 (§5.3); cosine needs it set.
    lr: float | None = None
    # noam only, instead of lr: the paper's rate times this (what version 1's lr meant)
    noam_scale: float | None = None
    schedule: str = "noam"
    warmup: int = 4000
    lr_floor: float = 0.1  # cosine: the rate at max_steps, as a fraction of lr
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-9
    weight_decay: float = 0.0
    # which tensors weight_decay shrinks: all, or "matrices", the weights of linear maps only
    # (no biases, norm gains or embeddings)
    decay: str = "all"
    clip: float = 0.0  # max gradient norm; 0: no clipping
    label_smoothing: float = 0.1
    word_dropout: float = 0.0  # input (source) tokens replaced by <unk> with this probability
    # a tagger's BPE merges skipped with this probability, each epoch (aiayn.data.noise.BpeDropout)
    subword_dropout: float = 0.0
    # R-Drop (Liang et al. 2021): each batch runs twice, under different dropout, and this
    # weights the KL divergence between the two outputs; 0: off. Twice the compute per step.
    rdrop: float = 0.0
    # How this machine runs the model (what it is lies in [model]): the device, the precision
    # of its matrix products, its attention kernel (also when the run's model decodes).
    device: str = "auto"
    # bf16: autocast matrix products to bfloat16; fp16: to float16, with a gradient scaler
    # (for GPUs without bf16)
    precision: str = "fp32"
    # auto: per call, the path measured faster (aiayn.runtime.attention.auto_impl); sdpa: torch's
    # fused kernels; math: written out
    attn_impl: str = "auto"
    compile: bool = False  # torch.compile the model's forward for training, as one graph
    eval_every: int = 1000  # steps between validations (loss, and BLEU when bleu is set)
    bleu: bool = True  # translate the validation set at each validation (greedy)
    patience: int = 0  # stop after this many validations without improvement; 0: never
    max_bad_steps: int = 10  # stop after this many steps in a row with a non-finite loss
    average_last: int = 1  # average the last N saved checkpoints at the end (§6.1); 1: none
    # Under torchrun: shard parameters, gradients and optimizer state across the processes
    # (FSDP) instead of keeping a whole copy on each (DDP)
    fsdp: bool = False
    # recompute each layer's activations in the backward pass instead of keeping them: less
    # memory (the paper's base model: about half) for about a third more compute per step
    activation_checkpointing: bool = False
    # the output layer and loss over this many positions at a time, so that the whole float32
    # logits never exist (aiayn.train.chunked); 0: all at once. Language models and translation
    loss_chunk: int = 0
    log_every: int = 50
    # also write the logged scalars as TensorBoard event files in RUN_DIR/tensorboard (the
    # optional extra: pip install 'aiayn[tensorboard]')
    tensorboard: bool = False
    # processes that read and collate the next batches while this one trains (a DataLoader);
    # -1: 2 on CUDA (into pinned memory), none elsewhere
    loader_workers: int = -1
    # Fine-tuning (docs/guide.md): start from the weights of the run directory `init`; with
    # new_head, the family's head starts afresh even where the run has one of the same shape
    init: str = ""
    new_head: bool = False
    freeze: str = ""  # comma-separated: embeddings, layers:N (each stack's lowest N), modules
    lora_rank: int = 0  # LoRA adapters of this rank on lora_targets, the rest frozen; 0: none
    lora_alpha: float = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0
    lora_targets: str = "q,k,v,o"  # comma-separated among q, k, v, o (attention) and ff
    head_lr: float | None = None  # the peak rate of the head's tensors; None: train.lr
    layer_decay: float = 1.0  # layer l of a stack of L learns at lr * layer_decay ** (L + 1 - l)

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "batch_tokens",
            "accumulate",
            "eval_every",
            "log_every",
            "average_last",
            "max_bad_steps",
        ):
            require("train", name, getattr(self, name), getattr(self, name) > 0, "positive")
        require("train", "lora_rank", self.lora_rank, self.lora_rank >= 0, ">= 0")
        for name in ("lora_alpha", "head_lr"):
            value = getattr(self, name)
            require("train", name, value, value is None or value > 0, "positive")
        require("train", "lora_dropout", self.lora_dropout, 0 <= self.lora_dropout < 1, "in [0, 1)")
        require("train", "layer_decay", self.layer_decay, 0 < self.layer_decay <= 1, "in (0, 1]")
        require("train", "loader_workers", self.loader_workers, self.loader_workers >= -1, ">= -1")
        self._check_loss_chunk()
        for name in ("warmup", "patience"):
            require("train", name, getattr(self, name), getattr(self, name) >= 0, ">= 0")
        for name in ("max_minutes", "clip", "weight_decay", "rdrop"):
            require("train", name, getattr(self, name), getattr(self, name) >= 0, ">= 0")
        require("train", "seed", self.seed, 0 <= self.seed < 2**64, "in [0, 2**64)")
        for name in ("lr", "noam_scale"):
            value = getattr(self, name)
            require("train", name, value, value is None or value > 0, "positive")
        self._check_rate()
        require("train", "eps", self.eps, self.eps > 0, "positive")
        for name in ("beta1", "beta2"):
            require("train", name, getattr(self, name), 0 <= getattr(self, name) < 1, "in [0, 1)")
        require(
            "train",
            "device",
            self.device,
            DEVICE.fullmatch(self.device) is not None,
            "auto, cpu, cuda, cuda:N or mps",
        )
        eps = self.label_smoothing
        require("train", "label_smoothing", eps, 0 <= eps < 1, "in [0, 1)")
        require("train", "lr_floor", self.lr_floor, 0 <= self.lr_floor <= 1, "in [0, 1]")
        for name in ("word_dropout", "subword_dropout"):
            p = getattr(self, name)
            require("train", name, p, 0 <= p < 1, "in [0, 1)")
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}
        for name, allowed in {**choices, "decay": DECAYS}.items():
            value = getattr(self, name)
            require("train", name, value, value in allowed, f"one of {', '.join(allowed)}")
        impls = ATTENTION_IMPLS
        require("train", "attn_impl", self.attn_impl, self.attn_impl in impls, ", ".join(impls))

    def _check_loss_chunk(self) -> None:
        require("train", "loss_chunk", self.loss_chunk, self.loss_chunk >= 0, ">= 0")
        for name, why in (("rdrop", "R-Drop's KL needs"), ("fsdp", "sharding gathers")):
            if self.loss_chunk and getattr(self, name):
                raise ValueError(
                    f"train.loss_chunk={self.loss_chunk} with train.{name}="
                    f"{getattr(self, name)!r}: {why} the whole output layer in one pass; "
                    "set train.loss_chunk = 0"
                )

    def _check_rate(self) -> None:
        if self.noam_scale is not None and self.lr is not None:
            raise ValueError(
                f"train.lr={self.lr!r} and train.noam_scale={self.noam_scale!r} both set the "
                "peak rate; set one"
            )
        if self.schedule != "noam" and self.noam_scale is not None:
            raise ValueError(
                f"train.noam_scale={self.noam_scale!r} scales the noam schedule; under "
                f"{self.schedule}, set train.lr (the peak rate)"
            )
        if self.schedule != "noam" and self.lr is None:
            raise ValueError(f"train.lr is unset; the {self.schedule} schedule needs its peak rate")


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr)


def family_fields(arch: str) -> tuple[str, ...]:
    """The [data] fields that only some families read and model.arch = `arch` reads: its
    length and the fields naming its files."""
    kind = family(arch)
    return (kind.data_length, *kind.data_files)


def other_fields(arch: str) -> set[str]:
    """The [data] fields of other families than `arch`, which `arch` does not read."""
    every = {name for other in FAMILIES for name in family_fields(other)}
    return every - set(family_fields(arch))


def _check_family_fields(data: dict[str, Any]) -> None:
    """Refuse a data length or file or a [train] field of another family: none would read it."""
    model, table = data.get("model", {}), data.get("data", {})
    if not (isinstance(model, dict) and isinstance(table, dict)):
        return  # malformed tables, which from_dict names
    arch = model.get("arch", ModelConfig.arch)
    kind, other = family(arch), other_fields(arch)
    for name in sorted(set(table) & other):
        own = (
            f"whose length is data.{kind.data_length}"
            if name in LENGTHS
            else "whose files are " + ", ".join(f"data.{f}" for f in kind.data_files)
        )
        raise ValueError(f"data.{name}={table[name]!r} is not read by model.arch = {arch!r}, {own}")
    train = data.get("train", {})
    others = {name for f in FAMILIES.values() for name in f.train_fields} - set(kind.train_fields)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name in sorted(set(train) & others if isinstance(train, dict) else ()):
        if train[name] != defaults[name]:  # a saved config writes every field
            raise ValueError(f"train.{name}={train[name]!r} is not read by model.arch = {arch!r}")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "decode": DecodeConfig}


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        m = self.model
        if m.arch == "encoder_decoder" and m.share_embeddings and not self.data.joint_vocab:
            raise ValueError(
                "model.share_embeddings=True is invalid with data.joint_vocab=False; "
                "shared embeddings need one vocabulary"
            )

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], notice: Callable[[str], None] | None = stderr_line
    ) -> RunConfig:
        """The config of a parsed TOML file: a version-1 file (no `version`) read as version 2,
        with a `notice` line for each field read otherwise than it is named (None: silent)."""
        version = file_version(data)
        data = {k: v for k, v in data.items() if k != "version"}
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ValueError(f"unknown table [{unknown[0]}]; valid tables: {', '.join(SECTIONS)}")
        if version == 1:
            data = upgrade(data, notice or (lambda line: None))
        else:
            refuse_version_1_names(data)
        _check_family_fields(data)
        return cls(**{name: from_dict(c, data.get(name, {}), name) for name, c in SECTIONS.items()})

    @classmethod
    def load(
        cls,
        path: str | Path,
        overrides: list[str] = (),
        notice: Callable[[str], None] | None = stderr_line,
    ) -> RunConfig:
        """Read a TOML file and apply `section.key=value` overrides (to the file as written,
        before a version-1 file is read as version 2); notices name the file."""
        tell = notice and (lambda line: notice(f"{path}: {line}"))
        return cls.from_dict(apply_overrides(load_toml(path), list(overrides)), tell)

    def to_dict(self) -> dict[str, Any]:
        """The config as a version-2 TOML document; of the data lengths and files, the
        model's own."""
        other = other_fields(self.model.arch)
        tables = {
            name: {
                k: v
                for k, v in dataclasses.asdict(getattr(self, name)).items()
                if v is not None and not (name == "data" and k in other)
            }
            for name in SECTIONS
        }
        return {"version": VERSION, **tables}

    def check_resume(self, saved: RunConfig) -> None:
        """Refuse this config as the continuation of a run trained with `saved` if it changes
        what the run's weights or tokenizer are."""
        for section, names in RESUME_FIXED.items():
            old, new = getattr(saved, section), getattr(self, section)
            for name in sorted(names):
                if getattr(old, name) != getattr(new, name):
                    raise ValueError(
                        f"--set {section}.{name}={getattr(new, name)!r}: a resumed run keeps "
                        f"the {section}.{name}={getattr(old, name)!r} it was trained with"
                    )

    def difference(self, other: RunConfig) -> str | None:
        """The first value `other` sets otherwise, as 'section.key=value', if any; the model
        fields a task derives from its data (vocabulary, padding id, classes) are not set by a
        config file and are not compared."""
        mine, theirs = self.to_dict(), other.to_dict()
        for section in SECTIONS:
            for key in sorted(set(mine[section]) | set(theirs[section])):
                if section == "model" and key in DERIVED:
                    continue
                if mine[section].get(key) != theirs[section].get(key):
                    return f"{section}.{key}={theirs[section].get(key)!r}"
        return None

    def replace(self, section: str, **changes: Any) -> RunConfig:
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )

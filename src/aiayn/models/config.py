"""The model's hyper-parameters: one frozen dataclass, checked when it is made.

Defaults are the paper's base model (Table 3); `arch` picks the family. What the model is,
not how a machine runs it: device, precision, attention kernels and compilation are the run's
(`aiayn.config.TrainConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from aiayn.configfile import from_dict, load_toml, require
from aiayn.families import names
from aiayn.nn.feedforward import FEEDFORWARD_NAMES
from aiayn.nn.norm import NORMS
from aiayn.nn.positional import POSITIONAL, RopeScaling

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "encoder_decoder"
    vocab_size: int = 37000  # target vocabulary; the only one for LMs and classifiers
    src_vocab_size: int | None = None  # encoder-decoder source vocabulary; None: vocab_size
    d_model: int = 512
    n_heads: int = 8
    n_kv_heads: int | None = None  # fewer than n_heads: grouped-query attention
    head_dim: int | None = None  # d_k = d_v of each head; None: d_model / n_heads
    d_ff: int = 2048
    n_layers: int = 6  # encoder layers, or the only stack's
    n_decoder_layers: int | None = None  # None: n_layers
    dropout: float = 0.1  # residual and embedding dropout (§5.4)
    attn_dropout: float = 0.0  # on attention weights; the paper has none
    activation: str = "relu"
    positional: str = "sinusoidal"
    max_len: int = 1024  # longest sequence for learned positions
    rope_base: float = 10000.0
    # Llama 3's RoPE scaling (aiayn.nn.positional.RopeScaling); rope_factor 1: none
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_len: int = 8192
    attn_window: int | None = None  # decoder-only: each query sees only the last N keys
    norm: str = "layernorm"
    norm_first: bool = False  # False: post-norm, as in the paper
    norm_eps: float = 1e-5
    final_norm: bool | None = None  # a norm after each stack; None: exactly when norm_first
    bias: bool = True  # biases in the linear maps and LayerNorm
    qkv_bias: bool | None = None  # biases on the query, key and value maps; None: `bias`
    scale_embeddings: bool = True  # multiply embeddings by sqrt(d_model) (§3.4)
    embed_norm: bool = False  # a norm on the summed token and position embeddings (BERT)
    n_segments: int = 0  # classifier segment (token type) embeddings, as BERT's; 0: none
    output_bias: bool = False  # a bias on the output logits (Marian's final_logits_bias)
    share_embeddings: bool = True  # encoder-decoder: source and target share one embedding
    tie_output: bool = True  # target embedding = pre-softmax projection (both: §3.4)
    pad_id: int = 0
    n_classes: int = 2
    pooling: str = "cls"
    # Ablations (what each module is worth): false takes the module away. norm = "none" is
    # the ablation without normalisation.
    residual: bool = True  # the residual connections around every sub-layer
    feedforward: bool = True  # the position-wise feed-forward sub-layers
    scale_scores: bool = True  # attention scores divided by sqrt(d_k) (§3.2.1)

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "n_heads",
            "d_ff",
            "n_layers",
            "max_len",
            "n_classes",
            "rope_original_max_len",
        ):
            _require(getattr(self, name) > 0, name, getattr(self, name), "a positive integer")
        _require(self.n_segments >= 0, "n_segments", self.n_segments, ">= 0")
        for name in ("src_vocab_size", "n_kv_heads", "n_decoder_layers", "head_dim", "attn_window"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, value, "a positive integer or unset")
        _require(
            self.head_dim is not None or self.d_model % self.n_heads == 0,
            "d_model",
            self.d_model,
            f"divisible by n_heads={self.n_heads} (or head_dim set)",
        )
        _require(self.rope_base > 0, "rope_base", self.rope_base, "positive")
        _require(self.rope_factor >= 1.0, "rope_factor", self.rope_factor, ">= 1 (1: no scaling)")
        _require(
            0 < self.rope_low_freq_factor < self.rope_high_freq_factor,
            "rope_low_freq_factor",
            self.rope_low_freq_factor,
            f"positive and below rope_high_freq_factor={self.rope_high_freq_factor}",
        )
        _require(
            self.attn_window is None or self.arch == "decoder_only",
            "attn_window",
            self.attn_window,
            "unset unless arch = decoder_only",
        )
        _require(
            self.n_heads % self.kv_heads == 0,
            "n_heads",
            self.n_heads,
            f"divisible by n_kv_heads={self.kv_heads}",
        )
        for name in ("dropout", "attn_dropout"):
            _require(0.0 <= getattr(self, name) < 1.0, name, getattr(self, name), "in [0, 1)")
        _require(self.norm_eps > 0, "norm_eps", self.norm_eps, "positive")
        _one_of("arch", self.arch, names())
        _one_of("activation", self.activation, FEEDFORWARD_NAMES)
        _one_of("positional", self.positional, POSITIONAL)
        _one_of("norm", self.norm, NORMS)
        _one_of("pooling", self.pooling, POOLINGS)
        self._check_ablations()
        if self.positional == "rope":
            _require(
                self.d_head % 2 == 0,
                "positional",
                self.positional,
                f"used with an even head size; got {self.d_head}",
            )
        if self.arch == "encoder_decoder" and self.share_embeddings:
            _require(
                self.source_vocab == self.vocab_size,
                "share_embeddings",
                True,
                f"used with one vocabulary; src_vocab_size={self.source_vocab} "
                f"!= vocab_size={self.vocab_size}",
            )

    def _check_ablations(self) -> None:
        if self.norm != "none":
            return
        # post-norm is "normalise the residual sum": without a norm it is nothing at all
        _require(self.norm_first, "norm", "none", "norm_first = true with it (pre-norm)")
        _require(not self.embed_norm, "norm", "none", "embed_norm = false with it")
        _require(self.final_norm is not True, "norm", "none", "final_norm unset or false with it")

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def rope_scaling(self) -> RopeScaling:
        return RopeScaling(
            self.rope_factor,
            self.rope_low_freq_factor,
            self.rope_high_freq_factor,
            self.rope_original_max_len,
        )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def source_vocab(self) -> int:
        return self.src_vocab_size or self.vocab_size

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def has_final_norm(self) -> bool:
        return self.norm_first if self.final_norm is None else self.final_norm

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelConfig:
        """Read the [model] table of a TOML config file."""
        data = load_toml(path)
        if "model" not in data:
            raise ValueError(f"config file {str(path)!r} has no [model] table")
        # how attention runs is the run's (train.attn_impl), not the model's; older files have it
        table = {k: v for k, v in data["model"].items() if k != "attn_impl"}
        return from_dict(cls, table, "model")

    def to_dict(self) -> dict[str, object]:
        """The set fields, as a TOML-ready table (unset optional fields left out)."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def _require(ok: bool, field: str, value: object, expected: str) -> None:
    require("model", field, value, ok, expected)


def _one_of(field: str, value: str, choices) -> None:
    _require(value in choices, field, value, f"one of {', '.join(sorted(choices))}")

"""CTranslate2, the engine people serve translation models with on CPUs: `aiayn export-ct2`
writes an encoder-decoder run as a CTranslate2 model, and `aiayn translate --engine ct2`
decodes with it, through the run's own tokenizers and recaser.

The model is described with CTranslate2's own specification API, as its OpenNMT-py converter
does: pre- or post-norm layers, the run's position table given as it is (so the paper's
interleaved sinusoids, Marian's halves and learned positions all carry over), embeddings scaled
by sqrt(d_model) or not, shared or separate vocabularies. What the spec cannot hold (RoPE,
ALiBi, grouped-query attention, an ablation) is refused by name. `ctranslate2` is an optional
dependency: `pip install 'aiayn[ct2]'`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aiayn.decode.quantize import refuse_int8
from aiayn.decode.translate import Translator
from aiayn.families import family
from aiayn.interop.ct2_check import check_model_bin
from aiayn.models import ModelConfig
from aiayn.nn.positional import sinusoid_table
from aiayn.run.atomic import first_line
from aiayn.run.files import TOKENIZER
from aiayn.run.folder import OutputFolder
from aiayn.run.paths import inside
from aiayn.safeio import read_input_json
from aiayn.tasks.translation import load_translator

CT2_DIR = "ct2"  # export-ct2's default folder inside the run directory
TARGET_TOKENIZER = "target_tokenizer.json"  # beside tokenizer.json, the source's, if not joint
MAX_VOCABULARY_BYTES = 64 << 20
MAX_CONFIG_BYTES = 1 << 20
# export-ct2's config.json: each key it may hold, with its type
CT2_CONFIG = {
    "add_source_bos": bool, "add_source_eos": bool, "bos_token": str, "decoder_start_token": str,
    "eos_token": str, "unk_token": str, "layer_norm_epsilon": float, "multi_query_attention": bool,
}  # fmt: skip
ACTIVATION = {"relu": "RELU", "gelu": "GELU", "gelu_tanh": "GELUTanh", "silu": "SWISH"}
QUANTIZATIONS = ("float32", "int8", "int8_float32")


def ctranslate2() -> Any:
    try:
        import ctranslate2
    except ImportError:
        raise ValueError(
            "CTranslate2 is not installed: pip install 'aiayn[ct2]' (or ctranslate2)"
        ) from None
    return ctranslate2


def check_convertible(m: ModelConfig) -> None:
    """A ValueError naming the first field of `m` that CTranslate2's Transformer cannot hold."""
    if not family(m.arch).ct2:
        raise ValueError(f"model.arch={m.arch!r}: export-ct2 writes encoder-decoder runs only")
    needs = {
        "positional": (m.positional, ("sinusoidal", "sinusoidal_halves", "learned")),
        "activation": (m.activation, tuple(ACTIVATION)),
        "norm": (m.norm, ("layernorm", "rmsnorm")),
        "n_kv_heads": (m.kv_heads, (m.n_heads,)),
        "head_dim": (m.d_head, (m.d_model // m.n_heads,)),
        "final_norm": (m.final_norm, (None, m.norm_first)),
        "embed_norm": (m.embed_norm, (False,)),
        "residual": (m.residual, (True,)),
        "feedforward": (m.feedforward, (True,)),
        "scale_scores": (m.scale_scores, (True,)),
    }
    for field, (value, allowed) in needs.items():
        if value not in allowed:
            raise ValueError(
                f"model.{field}={value!r} cannot be exported to CTranslate2: it needs "
                f"{' or '.join(map(repr, allowed))}"
            )


def position_table(model: torch.nn.Module, side: str, m: ModelConfig) -> torch.Tensor:
    """The (max_len, d_model) table the run adds to `side`'s embeddings."""
    if m.positional == "learned":
        return model.state_dict()[f"transformer.{side}.pos.table.weight"]
    halves = m.positional == "sinusoidal_halves"
    return sinusoid_table(torch.arange(m.max_len), m.d_model, halves)


def build_spec(translator: Translator) -> Any:
    """CTranslate2's TransformerSpec of a translator's model, with its vocabularies, validated."""
    ctranslate2()  # installed, or a ValueError saying how
    from ctranslate2.specs import common_spec, transformer_spec

    model, m = translator.model, translator.model.cfg
    check_convertible(m)
    spec = transformer_spec.TransformerSpec.from_config(
        (m.n_layers, m.decoder_layers),
        m.n_heads,
        pre_norm=m.norm_first,
        activation=getattr(common_spec.Activation, ACTIVATION[m.activation]),
        rms_norm=m.norm == "rmsnorm",
    )
    # copies: CTranslate2 optimises (quantizes) the arrays it is given in place
    w = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    for side, stack in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        embed = "src_embed.weight" if side == "encoder" else "tgt_embed.weight"
        embeddings = stack.embeddings[0] if isinstance(stack.embeddings, list) else stack.embeddings
        embeddings.weight = w.get(embed, w["src_embed.weight"])  # shared: one table
        stack.scale_embeddings = m.scale_embeddings
        stack.position_encodings.encodings = position_table(model, side, m).float().numpy().copy()
        if m.norm_first:
            norm(stack.layer_norm, w, f"transformer.{side}.norm")
        for i, layer in enumerate(stack.layer):
            p = f"transformer.{side}.layers.{i}"
            linear(layer.self_attention.linear[0], w, f"{p}.self_attn.qkv")
            linear(layer.self_attention.linear[1], w, f"{p}.self_attn.out")
            norm(layer.self_attention.layer_norm, w, f"{p}.norm1")
            ffn_norm = f"{p}.norm2"
            if side == "decoder":
                linear(layer.attention.linear[0], w, f"{p}.cross_attn.q")
                linear(layer.attention.linear[1], w, f"{p}.cross_attn.kv")
                linear(layer.attention.linear[2], w, f"{p}.cross_attn.out")
                norm(layer.attention.layer_norm, w, f"{p}.norm2")
                ffn_norm = f"{p}.norm3"
            linear(layer.ffn.linear_0, w, f"{p}.ffn.w_in")
            linear(layer.ffn.linear_1, w, f"{p}.ffn.w_out")
            norm(layer.ffn.layer_norm, w, ffn_norm)
    linear(spec.decoder.projection, w, "generator")
    src_tok, tgt_tok = translator.src_tok, translator.tgt_tok
    spec.register_source_vocabulary(vocabulary(src_tok, m.source_vocab))
    spec.register_target_vocabulary(vocabulary(tgt_tok, m.vocab_size))
    special = translator.special
    spec.config.bos_token = spec.config.decoder_start_token = tgt_tok.tok.id_to_token(special.bos)
    spec.config.eos_token = tgt_tok.tok.id_to_token(special.eos)
    spec.config.unk_token = tgt_tok.tok.id_to_token(tgt_tok.unk_id)
    spec.config.layer_norm_epsilon = m.norm_eps
    # a source is its tokens then </s> (Translator._source_ids): CTranslate2 appends the </s>,
    # so that the tokens of the folder's tokenizer.json translate as aiayn translates
    spec.config.add_source_eos = True
    spec.validate()
    return spec


def linear(spec: Any, w: dict[str, Any], name: str) -> None:
    spec.weight = w[f"{name}.weight"]
    if f"{name}.bias" in w:
        spec.bias = w[f"{name}.bias"]


def norm(spec: Any, w: dict[str, Any], name: str) -> None:
    spec.gamma = w[f"{name}.weight"]
    if f"{name}.bias" in w:
        spec.beta = w[f"{name}.bias"]


def vocabulary(tok: Any, size: int) -> list[str]:
    """Token strings by id, padded to the model's embedding rows with names no text makes."""
    tokens = [tok.tok.id_to_token(i) for i in range(tok.vocab_size)]
    return tokens + [f"<aiayn-unused-{i}>" for i in range(len(tokens), size)]


def export_ct2(
    run_dir: str | Path,
    out: str | Path | None = None,
    quantization: str = "float32",
    log: Callable[[str], None] = print,
) -> Path:
    """Write the CTranslate2 model of the run `run_dir` into `out` (default RUN_DIR/ct2)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"--quantization {quantization!r}: expected one of {QUANTIZATIONS}")
    run_dir, given = Path(run_dir), out is not None
    out = Path(out) if out is not None else run_dir / CT2_DIR
    refuse_int8(run_dir)
    translator = load_translator(run_dir, log=log)
    spec = build_spec(translator)
    spec.optimize(quantization=quantization)
    with OutputFolder(out, "export-ct2", within=None if given else run_dir):
        spec.save(str(out))
        # the tokens CTranslate2 reads and writes: the source's, and the target's if other
        translator.src_tok.save(out / TOKENIZER)
        if translator.tgt_tok is not translator.src_tok:
            translator.tgt_tok.save(out / TARGET_TOKENIZER)
    log(f"exported {run_dir} to CTranslate2 ({quantization}) in {out}")
    return out


class CT2Translator(Translator):
    """A Translator that decodes with CTranslate2: the same tokenizers, batches, length
    limits, banned tokens, recaser and output as aiayn's own, another engine's search. Beam
    search ranks by CTranslate2's length normalisation (score / length ** alpha): aiayn's own
    with `decode.length_norm = "length"`, not with GNMT's."""

    def __init__(self, base: Translator, engine: Any, one_call: bool = False) -> None:
        super().__init__(
            base.model, base.src_tok, base.tgt_tok, base.decode, base.max_len, base.recase
        )
        self.engine, self.one_call = engine, one_call  # a ctranslate2.Translator
        cfg = self.model.cfg
        self.src_tokens = vocabulary(self.src_tok, cfg.source_vocab)
        self.tgt_ids = {t: i for i, t in enumerate(vocabulary(self.tgt_tok, cfg.vocab_size))}
        # aiayn's searches never choose <s> or <pad> (Special.banned)
        self.banned = [[self.tgt_tok.tok.id_to_token(i)] for i in self.special.banned]

    def _weights(self) -> None:
        return None  # the model's layers are not used

    def _search(self, src: torch.Tensor, beam: int) -> list[list[tuple[list[int], float]]]:
        # without the </s> that ends each source: CTranslate2 adds it (add_source_eos)
        rows = [[i for i in row if i != self.special.pad][:-1] for row in src.tolist()]
        # aiayn's limit per sentence (search._limits): its length + max_extra, capped at the
        # model's positions. CTranslate2 takes one limit a call, so one call per limit: a
        # beam cut at a batch's limit afterwards is not the beam searched within it (greedy's
        # is). `one_call` makes one call a batch instead, as a CTranslate2 user's timing would.
        limits = [min(len(r) + 1 + self.decode.max_extra, self.max_len) for r in rows]
        longest = max(limits)
        groups: dict[int, list[int]] = {}  # a call's limit: the rows it decodes
        for i, n in enumerate(limits):
            groups.setdefault(longest if self.one_call else n, []).append(i)
        found: list[list[tuple[list[int], float]]] = [[] for _ in rows]
        for cap, which in groups.items():
            results = self.engine.translate_batch(
                [[self.src_tokens[t] for t in rows[i]] for i in which],
                beam_size=beam,
                max_decoding_length=cap,
                min_decoding_length=0,  # aiayn may end at once, with </s> (CTranslate2: 1 token)
                length_penalty=self.decode.alpha,
                suppress_sequences=self.banned,
                return_scores=False,
            )
            for i, res in zip(which, results, strict=True):
                found[i] = [([self.tgt_ids[t] for t in res.hypotheses[0]][: limits[i]], 0.0)]
        return found


def ct2_translator(base: Translator, run_dir: str | Path, folder: str | Path | None) -> Translator:
    """`base`'s translator decoding with the CTranslate2 model in `folder` (default
    RUN_DIR/ct2, which may not be a link out of the run), refused unless that model reads and
    writes the run's vocabularies."""
    folder = Path(folder) if folder is not None else inside(run_dir, CT2_DIR)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no CTranslate2 model of aiayn's (run export-ct2)")
    m = base.model.cfg
    expected = {
        "source": vocabulary(base.src_tok, m.source_vocab),
        "target": vocabulary(base.tgt_tok, m.vocab_size),
    }
    for side, tokens in expected.items():
        path = inside(folder, f"{side}_vocabulary.json")
        if not path.exists() and not path.is_symlink():
            path = inside(folder, "shared_vocabulary.json")
        if not path.exists() and not path.is_symlink():
            raise ValueError(f"{folder}: no CTranslate2 model of aiayn's (run export-ct2)")
        if read_input_json(path, MAX_VOCABULARY_BYTES, within=folder) != tokens:
            raise ValueError(f"{path}: not the {side} vocabulary of {run_dir}; export-ct2 again")
    return CT2Translator(base, load_engine(folder, expected["target"]))


def check_config(folder: Path, tokens: list[str]) -> None:
    """Refuse `folder`'s config.json unless it is one export-ct2 writes: the keys and types of
    CT2_CONFIG, its special tokens among `tokens` (CTranslate2 reads them only mid-translation,
    where a bad one is a crash, not a message)."""
    path = inside(folder, "config.json")
    config = read_input_json(path, MAX_CONFIG_BYTES, within=folder)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a JSON object; export-ct2 again")
    for key, value in config.items():
        kind = CT2_CONFIG.get(key)
        if kind is None:
            raise ValueError(f"{path}: key {key[:40]!r} is not one export-ct2 writes")
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok or (kind is float and not math.isfinite(value)):
            raise ValueError(f"{path}: {key}={value!r:.40} is not {kind.__name__}")
        if kind is str and value not in tokens:
            raise ValueError(f"{path}: {key}={value!r:.40} is not in the target vocabulary")


def load_engine(folder: Path, tokens: list[str], threads: int = 0) -> Any:
    """CTranslate2's translator of `folder` whose target vocabulary is `tokens`, on the CPU
    (threads 0: its default). Its files are checked first (regular files inside the folder,
    the config export-ct2 writes), and what CTranslate2 still refuses is an error naming the
    folder."""
    check_config(folder, tokens)
    ct2 = ctranslate2()
    check_model_bin(
        inside(folder, "model.bin"), ct2.specs.model_spec.CURRENT_BINARY_VERSION, folder
    )
    try:
        engine = ct2.Translator(str(folder), device="cpu", intra_threads=threads)
        # some of the spec's values (an activation's, say) are read only when a model first
        # decodes: one step of one token, so that a damaged one is refused here, by name
        engine.translate_batch([[tokens[0]]], max_decoding_length=1, beam_size=1)
    except Exception as e:  # the C++ reader raises RuntimeError, IndexError, MemoryError...
        raise ValueError(
            f"{folder}: CTranslate2 could not load the model ({first_line(e)}); export-ct2 again"
        ) from None
    return engine

"""Beam-5 translation speed, aiayn against CTranslate2 with the very same weights (exported by
`aiayn export-ct2`'s spec), interleaved after warm-up, in one run, on `--threads` threads:

(a) a trained run (`--run`, default runs/multi30k from `make multi30k`) on test_2016_flickr,
    through each engine's whole translate path (tokenize, batch, search, detokenize);
(b) a Marian-base-shaped model (d_model 512, 6+6 layers, d_ff 2048, 8 heads, post-norm) with
    random weights on the same sentences, </s> barred (an output bias of -1e4) so that both
    search exactly `--new-tokens` tokens a sentence: the same work on both sides (built from
    a seed in each engine's process).

aiayn's and CTranslate2's calls are each built and timed in a process of their own
(`benchmarks.apart`: CTranslate2's OpenMP runtime in aiayn's process slowed aiayn's steps), the
rounds still interleaved.

Precisions: fp32 against fp32 and int8 against int8 (aiayn's `--int8`: torch's dynamic int8
linear layers; CTranslate2's int8 export). Prints one JSON object per model and
appends it to results/bench.jsonl: each ratio of the engines' median speeds, and the same
ratio taken round by round (`paired_*`: median and range), which this machine's drift between
rounds moves less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from aiayn.config import RunConfig
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.text import read_lines
from aiayn.data.tokenizer import fit_tokenizer
from aiayn.decode.quantize import quantize_int8
from aiayn.decode.search import Special, beam_search
from aiayn.decode.translate import Translator
from aiayn.decode.weights import search_weights
from aiayn.interop.ct2 import CT2Translator, build_spec, load_engine, vocabulary
from aiayn.models import ModelConfig, build_model
from aiayn.runtime.attention import use_attention
from aiayn.tasks.translation import load_translator
from benchmarks.apart import apart_round_times
from benchmarks.common import paired_ratio, report

TEST = "../shared/data/multi30k/test_2016_flickr.en.gz"


def engine(translator: Translator, folder: Path, quantization: str, threads: int):
    """`translator`'s model saved for CTranslate2 at `quantization`, and loaded."""
    spec = build_spec(translator)
    spec.optimize(quantization=quantization)
    folder.mkdir()
    spec.save(str(folder))
    target = vocabulary(translator.tgt_tok, translator.model.cfg.vocab_size)
    return load_engine(folder, target, threads)


def trained(args: argparse.Namespace, sentences: list[str], tmp: Path) -> None:
    translator = load_translator(args.run, log=lambda _: None)
    ct2 = {q: engine(translator, tmp / f"run-{q}", q, args.threads) for q in ("float32", "int8")}
    engines = {
        "aiayn fp32": translator,
        "aiayn int8": int8_twin(translator),
        **{f"ct2 {q}": CT2Translator(translator, e) for q, e in ct2.items()},
    }
    outputs = {name: t.translate(sentences, 5) for name, t in engines.items()}
    greedy = {name: greedy_ids(t, sentences) for name, t in engines.items()}
    groups = {
        "aiayn": (aiayn_calls, (args.run, sentences, args.threads)),
        "ct2": (ct2_calls, (args.run, sentences, args.threads, str(tmp))),
    }
    times = apart_round_times(groups, args.rounds)
    summary(args, "trained run " + str(args.run), len(sentences), times, outputs, greedy)


def aiayn_calls(run: str, sentences: list[str], threads: int) -> dict:
    """In a worker (`benchmarks.apart`): aiayn's fp32 and int8 translate of `sentences`."""
    use_threads(threads)
    t = load_translator(run, log=lambda _: None)
    int8 = int8_twin(t)
    return {"aiayn fp32": lambda: t.translate(sentences, 5),
            "aiayn int8": lambda: int8.translate(sentences, 5)}  # fmt: skip


def int8_twin(t: Translator) -> Translator:
    """`t` with int8 linear layers (`--int8`), its tokenizers and settings the same."""
    return Translator(quantize_int8(t.model), t.src_tok, t.tgt_tok, t.decode, t.max_len, t.recase)


def ct2_calls(run: str, sentences: list[str], threads: int, tmp: str) -> dict:
    """In a worker: CTranslate2's engines that `trained` saved in `tmp`, timed as its users call
    them: one call a batch, at the batch's longest limit."""
    t = load_translator(run, log=lambda _: None)
    target = vocabulary(t.tgt_tok, t.model.cfg.vocab_size)
    ct2 = {q: CT2Translator(t, load_engine(Path(tmp) / f"run-{q}", target, threads), one_call=True)
           for q in ("float32", "int8")}  # fmt: skip
    return {f"ct2 {q}": (lambda c=c: c.translate(sentences, 5)) for q, c in ct2.items()}


def greedy_ids(t: Translator, sentences: list[str]) -> list[str]:
    """Each sentence's greedy token ids, through the translator's own batches and search."""
    t._detokenize = lambda hyps: [" ".join(map(str, h)) for h in hyps]
    try:
        return t.translate(sentences, 1)
    finally:
        del t._detokenize  # the class's own again


def marian_base(args: argparse.Namespace, sentences: list[str], tmp: Path) -> None:
    common = (sentences, args.batch, args.new_tokens, args.threads)
    groups = {
        "aiayn": (marian_aiayn_calls, common),
        "ct2": (marian_ct2_calls, (*common, str(tmp))),
    }
    summary(args, "marian-base-shaped d512 6+6 H8 ff2048, random", len(sentences),
            apart_round_times(groups, args.rounds), None, None)  # fmt: skip


def marian_shape(sentences: list[str], batch: int, threads: int) -> tuple[Translator, list]:
    """The random Marian-base-shaped model (seeded: the same in each worker), as a translator,
    and the sentences' token rows in batches of `batch`, shortest first."""
    use_threads(threads)
    d = RunConfig.load("configs/demo.toml").data
    tok = fit_tokenizer("bpe", read_lines(d.train_src) + read_lines(d.train_tgt), d.vocab_size)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size, d_model=512, n_heads=8, d_ff=2048, n_layers=6,
        n_decoder_layers=6, positional="sinusoidal_halves", norm_first=False,
        output_bias=True, max_len=256, dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    use_attention(model, "auto")  # as a run's model decodes by default
    with torch.no_grad():
        model.generator.bias[tok.eos_id] = -1e4
    rows = sorted(([*ids, tok.eos_id] for ids in tok.encode(sentences)), key=len)
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    return Translator(model, tok, tok, RunConfig().decode, cfg.max_len), batches


def marian_aiayn_calls(sentences: list[str], batch: int, n: int, threads: int) -> dict:
    """In a worker: aiayn's fp32 and int8 beam search of each batch, `n` tokens a sentence."""
    translator, batches = marian_shape(sentences, batch, threads)
    model, tok = translator.model, translator.src_tok
    special = Special(tok.bos_id, tok.eos_id, tok.pad_id)
    tensors = [pad_to_tensor(b, tok.pad_id) for b in batches]

    @torch.inference_mode()
    def ours(m) -> None:
        with search_weights(m).active():  # as `Translator` decodes on a CPU
            for src in tensors:
                beam_search(m, src, special, beam=5, alpha=0.6, max_extra=10**6, cap=n)

    int8 = quantize_int8(model)
    return {"aiayn fp32": lambda: ours(model), "aiayn int8": lambda: ours(int8)}


def marian_ct2_calls(sentences: list[str], batch: int, n: int, threads: int, tmp: str) -> dict:
    """In a worker: CTranslate2's fp32 and int8 beam search of the same batches."""
    translator, batches = marian_shape(sentences, batch, threads)
    tok = translator.src_tok
    words = [[[tok.tok.id_to_token(i) for i in r] for r in b] for b in batches]
    ct2 = {q: engine(translator, Path(tmp) / f"base-{q}", q, threads)
           for q in ("float32", "int8")}  # fmt: skip

    def theirs(e) -> None:
        for b in words:
            e.translate_batch(b, beam_size=5, max_decoding_length=n, return_scores=False)

    return {f"ct2 {q}": (lambda e=e: theirs(e)) for q, e in ct2.items()}


def summary(args, model: str, n: int, times: dict, outputs, greedy) -> None:
    rate = {k: round(n / statistics.median(v), 1) for k, v in times.items()}
    record = {
        "bench": "ct2",
        "model": model,
        "sentences": n,
        "beam": 5,
        "threads": args.threads,
        "sentences_per_s": rate,
        "aiayn_fp32_vs_ct2_fp32": round(rate["aiayn fp32"] / rate["ct2 float32"], 2),
        "aiayn_int8_vs_ct2_int8": round(rate["aiayn int8"] / rate["ct2 int8"], 2),
        "aiayn_int8_vs_aiayn_fp32": round(rate["aiayn int8"] / rate["aiayn fp32"], 2),
        # the same two ratios taken round by round: less moved by the machine's drift
        "paired_fp32": paired_ratio(times, "aiayn fp32", "ct2 float32"),
        "paired_int8": paired_ratio(times, "aiayn int8", "ct2 int8"),
    }
    if outputs:
        ref = outputs["aiayn fp32"]
        record["beam5_same_text_as_aiayn"] = {
            k: sum(a == b for a, b in zip(ref, v, strict=True)) for k, v in outputs.items()
        }
        ref = greedy["aiayn fp32"]
        record["greedy_same_tokens_as_aiayn"] = {
            k: sum(a == b for a, b in zip(ref, v, strict=True)) for k, v in greedy.items()
        }
    else:
        record["new_tokens"] = args.new_tokens
    report(record)


def use_threads(n: int) -> None:
    """torch's threads, set only to change the count: the call also turns MKL's dynamic
    threading off, which slowed SDPA's CPU kernel 1.3-5x (`aiayn.runtime.attention`), a setting
    `aiayn translate` never makes."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default="runs/multi30k", help="a trained encoder-decoder run")
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=("trained", "base"), help="one of the two models")
    args = p.parse_args()
    use_threads(args.threads)
    sentences = read_lines(TEST)[: args.sentences]
    with tempfile.TemporaryDirectory() as folder:
        if args.only != "base":
            if not Path(args.run).exists():
                raise SystemExit(f"{args.run}: no such run (make multi30k trains it)")
            trained(args, sentences, Path(folder))
        if args.only != "trained":
            marian_base(args, sentences, Path(folder))


if __name__ == "__main__":
    main()

"""The `aiayn` command line. Errors in what the user gave become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from aiayn.config import RunConfig
from aiayn.configfile import apply_overrides, load_toml
from aiayn.models import ModelConfig, build_model

if TYPE_CHECKING:
    from aiayn.decode.translate import Translator

ENSEMBLE_HELP = "run directory; a classifier's may repeat (an ensemble: mean probabilities)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parameter_breakdown(model: nn.Module) -> list[tuple[str, int]]:
    """(top-level part, parameters it adds) with shared matrices counted at first sight."""
    seen: set[int] = set()
    rows = []
    for name, child in model.named_children():
        fresh = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if fresh:
            rows.append((name, sum(p.numel() for p in fresh)))
    return rows


def cmd_params(args: argparse.Namespace) -> None:
    cfg = ModelConfig.from_toml(args.config)
    rows = parameter_breakdown(build_model(cfg, device="meta"))
    total = sum(n for _, n in rows)
    print(f"{cfg.arch}: {total:,} parameters ({total / 1e6:.1f}M)")
    for name, n in rows:
        print(f"  {name:<16}{n:>14,}")


def run_config(args: argparse.Namespace, out: Path) -> RunConfig:
    """The config of a new run (CONFIG plus --set), or of the run being resumed."""
    if args.resume:
        from aiayn.train.checkpoint import CONFIG, STATE

        if not (out / CONFIG).exists() or not (out / STATE).exists():
            raise ValueError(f"--resume: {out} holds no run to resume ({CONFIG}, {STATE})")
        return RunConfig.from_dict(apply_overrides(load_toml(out / CONFIG), args.set))
    if args.config is None:
        raise ValueError("a CONFIG file is needed unless --resume continues a run")
    cfg = RunConfig.load(args.config, args.set)
    # Under torchrun the main process checks, before any process has written there.
    if os.environ.get("RANK", "0") == "0" and out.exists() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} already holds files; pass --resume to continue that run "
            f"or choose another --out"
        )
    return cfg


def cmd_train(args: argparse.Namespace) -> None:
    from aiayn.tasks import train

    out = Path(args.out or Path("runs") / Path(args.config or "run").stem)
    train(run_config(args, out), out, resume=args.resume, log=log)


def prompt(text: str) -> str:
    """Show `text` on stderr, then read a line from stdin ('' at end of input)."""
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def cli_translator(args: argparse.Namespace, model_dir: str) -> Translator:
    """The translator of `model_dir` with --weights, and --alpha instead of its config's."""
    from aiayn.tasks.translation import load_translator

    translator = load_translator(model_dir, args.weights, log=log)
    if args.alpha is not None:
        if args.alpha < 0:
            raise ValueError(f"--alpha {args.alpha}: the length penalty must be >= 0")
        translator.decode = dataclasses.replace(translator.decode, alpha=args.alpha)
    return translator


def cmd_translate(args: argparse.Namespace) -> None:
    lines = open(args.input, encoding="utf-8") if args.input else sys.stdin  # noqa: SIM115
    translator = cli_translator(args, args.model)
    if lines.isatty():  # a person typing: answer each line as it comes
        log("type a sentence and press Enter; Ctrl-D ends")
        while line := prompt("> "):
            print(translator.translate([line.rstrip("\n")], args.beam)[0], flush=True)
        return
    with lines:
        for text in translator.translate_stream(lines, args.beam):
            print(text, flush=True)


def input_lines(path: str | None) -> Iterator[str]:
    """Lines of `path`, or of stdin, without their line endings."""
    with open(path, encoding="utf-8") if path else nullcontext(sys.stdin) as f:
        for line in f:
            yield line.rstrip("\n")


def cmd_generate(args: argparse.Namespace) -> None:
    from aiayn.decode.sample import generate
    from aiayn.tasks.language_model import load_language_model

    for name, ok, expected in (
        ("--max-new-tokens", args.max_new_tokens >= 0, ">= 0"),
        ("--temperature", args.temperature >= 0, ">= 0 (0: greedy)"),
        ("--top-k", args.top_k >= 0, ">= 0 (0: no limit)"),
        ("--top-p", 0 < args.top_p <= 1, "in (0, 1]"),
    ):
        if not ok:
            raise ValueError(
                f"{name} {getattr(args, name[2:].replace('-', '_'))} must be {expected}"
            )
    model, tok = load_language_model(args.model, args.weights, log=log)
    prompt = tok.encode([args.prompt])[0]
    if not prompt:
        raise ValueError(f"--prompt {args.prompt!r} has no tokens; give some text")
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    ids = list(prompt)
    shown = tok.decode([ids])[0]
    print(shown, end="", flush=True)
    stream = generate(
        model,
        torch.tensor([prompt]),
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        args.top_p,
        generator,
        banned=[tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id],  # never in the training text
    )
    for token in stream:
        ids.append(int(token))
        # Decode the whole text, so that word pieces join exactly as they will at the end.
        text = tok.decode([ids])[0]
        print(text[len(shown) :], end="", flush=True)
        shown = text
    print()


def cmd_classify(args: argparse.Namespace) -> None:
    from aiayn.data.text import chunked
    from aiayn.tasks.classification import load_classifiers

    classifier = load_classifiers(args.model, args.weights, log=log)
    for chunk in chunked(input_lines(args.input), 256):
        for label, p in classifier.predict(chunk):
            print(f"{label}\t{p:.4f}", flush=True)


def cmd_plot_metrics(args: argparse.Namespace) -> None:
    from aiayn.train.checkpoint import METRICS
    from aiayn.viz import plot_metrics

    run = Path(args.run_dir)
    if not (run / METRICS).exists():
        raise ValueError(f"{run}: no {METRICS} to plot")
    out = Path(args.out or run / "metrics.png")
    plot_metrics(run / METRICS, out)
    print(out)


def cmd_plot_attention(args: argparse.Namespace) -> None:
    from aiayn.tasks.translation import load_translator
    from aiayn.viz import save_attention_maps

    translator = load_translator(args.model, args.weights, log=log)
    maps = translator.attention(args.src, args.tgt)
    print(f"translation: {maps.translation}")
    out = Path(args.out or Path(args.model) / "attention")
    for path in save_attention_maps(maps.layers, args.layer, out):
        print(path)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from aiayn.tasks import read_run_config

    arch = read_run_config(args.model[0]).model.arch
    if arch == "encoder_classifier":
        evaluate_classifier(args)
    elif len(args.model) > 1:
        raise ValueError(f"several --model (an ensemble) are for classifiers, not {arch} models")
    else:
        evaluate_translation(args, args.model[0])


def evaluate_classifier(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_labelled
    from aiayn.tasks.classification import load_classifiers

    texts, labels = read_labelled(args.src)
    classifier = load_classifiers(args.model, args.weights, log=log)
    predicted = [label for label, _ in classifier.predict(texts)]
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "examples": len(labels)}))
    else:
        print(f"accuracy {100 * accuracy:.2f}% on {len(labels):,} examples")


def evaluate_translation(args: argparse.Namespace, model_dir: str) -> None:
    from aiayn.data.text import read_parallel
    from aiayn.evaluate import score_translations

    if not args.ref:
        raise ValueError("--ref is needed to score a translation model")
    src, ref = read_parallel(args.src, args.ref)
    translator = cli_translator(args, model_dir)
    scores = score_translations(translator.translate(src, args.beam), ref, args.lowercase)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}\n{scores['signature']}")


def cmd_demo(args: argparse.Namespace) -> None:
    from aiayn.demo import fresh_dir, report, run_demo

    cfg = RunConfig.load(args.config, args.set)
    result = run_demo(cfg, fresh_dir(Path(args.out)), log=log)
    print(report(result, Path(cfg.data.test_src).name.split(".")[0]))


def cmd_import_hf(args: argparse.Namespace) -> None:
    import shutil

    from aiayn.interop.hf import from_pretrained, read_config
    from aiayn.tasks.classification import save_labels
    from aiayn.train.checkpoint import (
        CONFIG,
        MODEL,
        TOKENIZER,
        atomic_write,
        save_config,
        save_weights,
    )

    src, out = Path(args.dir), Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} already holds files; choose another folder")
    model = from_pretrained(src)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / MODEL)
    save_config(RunConfig(model=model.cfg), out / CONFIG)
    if (src / "tokenizer.json").exists():
        atomic_write(out / TOKENIZER, lambda tmp: shutil.copyfile(src / "tokenizer.json", tmp))
    labels = read_config(src).get("id2label")
    if model.cfg.arch == "encoder_classifier" and labels:
        save_labels(out, [labels[k] for k in sorted(labels, key=int)])
    print(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train En->De for a few minutes, then show the results")
    demo.add_argument("--config", default="configs/demo.toml", help="(default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    demo.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    demo.set_defaults(run=cmd_demo)

    params = sub.add_parser("params", help="print the parameter count of a config's model")
    params.add_argument("config", help="TOML config file with a [model] table")
    params.set_defaults(run=cmd_params)

    train = sub.add_parser("train", help="train a model from a TOML config")
    train.add_argument("config", nargs="?", help="TOML config (not needed with --resume)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value; repeatable",
    )
    train.add_argument("--out", help="run directory (default: runs/CONFIG_NAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.set_defaults(run=cmd_train)

    for name, text in (
        ("translate", "translate lines (stdin or --input) to stdout"),
        ("evaluate", "BLEU and chrF of a translation model, or a classifier's accuracy"),
    ):
        cmd = sub.add_parser(name, help=text)
        if name == "translate":
            cmd.add_argument("--model", required=True, help="run directory")
        else:
            cmd.add_argument("--model", required=True, action="append", help=ENSEMBLE_HELP)
        cmd.add_argument("--beam", type=int, help="beam size (1: greedy; default: the config's)")
        cmd.add_argument(
            "--alpha", type=float, help="beam search's length penalty (default: the config's)"
        )
        cmd.add_argument("--weights", help="model, best or average (default: the best there)")
        if name == "translate":
            cmd.add_argument("--input", help="file of sentences, one a line (default: stdin)")
            cmd.set_defaults(run=cmd_translate)
        else:
            cmd.add_argument(
                "--src", required=True, help="source sentences, or a classifier's labelled TSV"
            )
            cmd.add_argument("--ref", help="reference translations, line-aligned")
            cmd.add_argument("--lowercase", action="store_true", help="case-insensitive scores")
            cmd.add_argument("--json", action="store_true", help="one JSON object on stdout")
            cmd.set_defaults(run=cmd_evaluate)
    gen = sub.add_parser("generate", help="continue a prompt with a language model (streamed)")
    gen.add_argument("--model", required=True, help="run directory")
    gen.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    gen.add_argument("--max-new-tokens", type=int, default=500, help="(default: %(default)s)")
    gen.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default: 0.8)")
    gen.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest; 0: all")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    gen.add_argument("--seed", type=int, help="the same seed gives the same text")
    gen.add_argument("--weights", help="model, best or average (default: the best there)")
    gen.set_defaults(run=cmd_generate)

    classify = sub.add_parser("classify", help="label each line (stdin or --input)")
    classify.add_argument("--model", required=True, action="append", help=ENSEMBLE_HELP)
    classify.add_argument("--input", help="file of texts, one a line (default: stdin)")
    classify.add_argument("--weights", help="model, best or average (default: the best there)")
    classify.set_defaults(run=cmd_classify)

    imp = sub.add_parser("import-hf", help="a Hugging Face BERT, GPT-2 or Marian as a run")
    imp.add_argument("dir", help="folder with config.json and model.safetensors")
    imp.add_argument("--out", required=True, help="run directory to write")
    imp.set_defaults(run=cmd_import_hf)

    metrics = sub.add_parser("plot-metrics", help="plot loss, learning rate and BLEU of a run")
    metrics.add_argument("run_dir", help="run directory with metrics.jsonl")
    metrics.add_argument("--out", help="PNG path (default: RUN_DIR/metrics.png)")
    metrics.set_defaults(run=cmd_plot_metrics)

    attn = sub.add_parser("plot-attention", help="heatmaps of a translation's attention")
    attn.add_argument("--model", required=True, help="run directory")
    attn.add_argument("--src", required=True, help="the source sentence")
    attn.add_argument("--tgt", help="a target to read instead of the model's own translation")
    attn.add_argument("--layer", default="all", help="layer number from 0, or all (default)")
    attn.add_argument("--weights", help="model, best or average (default: the best there)")
    attn.add_argument("--out", help="folder for the PNGs (default: MODEL/attention)")
    attn.set_defaults(run=cmd_plot_attention)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as e:
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else e
        print(f"aiayn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aiayn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0

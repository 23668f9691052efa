"""The `aiayn` command line. Errors in what the user gave become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aiayn.config import MAX_ALPHA, MAX_BEAM, RunConfig
from aiayn.models import ModelConfig, build_model, parameter_breakdown
from aiayn.run.files import WEIGHTS_HELP
from aiayn.safeio import check_args, check_text

if TYPE_CHECKING:
    from aiayn.decode.translate import Translator

ENSEMBLE_HELP = "run directory; a classifier's may repeat (an ensemble: mean probabilities)"
DEVICE_HELP = "auto (CUDA where there is one, else the CPU), cpu, cuda, cuda:N or mps"


def add_device(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: auto)")


def cli_device(args: argparse.Namespace) -> torch.device:
    from aiayn.device import pick_device

    return pick_device(args.device, "--device")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_params(args: argparse.Namespace) -> None:
    cfg = ModelConfig.from_toml(args.config)
    rows = parameter_breakdown(build_model(cfg, device="meta"))
    total = sum(n for _, n in rows)
    print(f"{cfg.arch}: {total:,} parameters ({total / 1e6:.1f}M)")
    for name, n in rows:
        print(f"  {name:<16}{n:>14,}")


def run_config(args: argparse.Namespace, out: Path) -> RunConfig:
    """The config of a new run (CONFIG plus --set), or of the run being resumed (its own
    config.toml plus --set, which may change how it trains but not what its model is)."""
    if not args.resume:
        if args.config is None:
            raise ValueError("a CONFIG file is needed unless --resume continues a run")
        return RunConfig.load(args.config, args.set)
    from aiayn.run.files import CONFIG, STATE
    from aiayn.run.lock import in_use, lock_holder
    from aiayn.run.paths import inside

    if holder := lock_holder(out):  # a run in progress, checkpointed yet or not
        raise in_use(out, holder, "--out")
    if not inside(out, CONFIG).exists() or not inside(out, STATE).exists():
        raise ValueError(
            f"--resume: {out} holds no run to resume ({CONFIG}, {STATE}){restart(out)}"
        )
    cfg = RunConfig.load(out / CONFIG, args.set)
    cfg.check_resume(RunConfig.load(out / CONFIG, notice=None))  # its notices said once
    if args.config is not None:  # the command that started the run, --resume added: fine
        difference = cfg.difference(RunConfig.load(args.config, args.set))
        if difference:
            raise ValueError(
                f"{args.config} sets {difference}, unlike the run in {out}: --resume "
                "continues a run with its own config; drop CONFIG, and change values with --set"
            )
    return cfg


def restart(out: Path) -> str:
    """How to start again a run that never reached its first checkpoint, if `out` is one."""
    from aiayn.run.files import CONFIG
    from aiayn.run.folder import owner

    if owner(out) != "train" or not (out / CONFIG).is_file():
        return ""
    return (
        f"; it never reached its first checkpoint: start it again with "
        f"`aiayn train {out / CONFIG} --out {out}` (a new run takes its place)"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from aiayn.tasks import train

    out = Path(args.out or Path("runs") / Path(args.config or "run").stem)
    train(run_config(args, out), out, resume=args.resume, log=log)


def cmd_prepare(args: argparse.Namespace) -> None:
    from aiayn.prepare.build import prepare

    prepare(RunConfig.load(args.config, args.set), Path(args.out), log=log)
    print(args.out)


def prompt(text: str) -> str:
    """Show `text` on stderr, then read a line from stdin ('' at end of input)."""
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def cli_translator(args: argparse.Namespace, model_dir: str) -> Translator:
    """The translator of `model_dir` with --weights, and --alpha instead of its config's."""
    from aiayn.tasks.translation import load_translator

    if args.beam is not None and not 1 <= args.beam <= MAX_BEAM:
        raise ValueError(f"--beam {args.beam} must be in [1, {MAX_BEAM}] (1: greedy search)")
    if args.alpha is not None and not 0 <= args.alpha <= MAX_ALPHA:  # NaN too
        raise ValueError(f"--alpha {args.alpha}: the length penalty must be in [0, {MAX_ALPHA:g}]")
    translator = load_translator(model_dir, args.weights, cli_device(args), log=log)
    if args.alpha is not None:
        translator.decode = dataclasses.replace(translator.decode, alpha=args.alpha)
    if getattr(args, "int8", False):
        from aiayn.decode.quantize import quantize_int8

        translator.model = quantize_int8(translator.model)
    return translator


def cmd_translate(args: argparse.Namespace) -> None:
    from aiayn.data.text import stream_lines

    if args.engine == "ct2" and args.int8:  # refused before anything is loaded
        raise ValueError("--int8 is aiayn's own int8; give ct2 export-ct2's int8 model")
    lines = stream_lines(args.input)
    translator = cli_translator(args, args.model)
    if args.engine == "ct2":
        from aiayn.interop.ct2 import ct2_translator

        translator = ct2_translator(translator, args.model, args.ct2)
    if args.input is None and sys.stdin.isatty():  # a person typing: answer each line
        log("type a sentence and press Enter; Ctrl-D ends")
        while line := prompt("> "):
            # a terminal's text arrives decoded with surrogate escapes under a C locale
            text = check_text(line.rstrip("\n"), "stdin")
            print(translator.translate([text], args.beam)[0], flush=True)
        return
    for text in translator.translate_stream(lines, args.beam):
        print(text, flush=True)


def cmd_generate(args: argparse.Namespace) -> None:
    from aiayn.decode.text import check_options, stream
    from aiayn.tasks import place
    from aiayn.tasks.language_model import load_language_model

    options = (args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    check_options(
        *options, label=lambda name, value: f"--{name.replace('_', '-')} {value}", stop=args.stop
    )
    model, tok = load_language_model(args.model, args.weights, log=log)
    model = place(model, cli_device(args))
    prompts = args.prompt or ["\n"]
    if len(prompts) == 1:  # one prompt: its text as it comes
        print(tok.decode(tok.encode_prompts(prompts))[0], end="", flush=True)
        for pieces in stream(model, tok, prompts, *options[:4], args.stop, args.seed):
            print(pieces[0], end="", flush=True)
        print()
        return
    texts = [""] * len(prompts)  # several: decoded as one batch, each printed at the end
    for pieces in stream(model, tok, prompts, *options[:4], args.stop, args.seed):
        texts = [t + p for t, p in zip(texts, pieces, strict=True)]
    for prompt, text in zip(tok.decode(tok.encode_prompts(prompts)), texts, strict=True):
        print(f"{prompt}{text}\n", flush=True)


def cmd_classify(args: argparse.Namespace) -> None:
    from aiayn.data.text import chunked, stream_lines
    from aiayn.tasks.classification import load_classifiers

    lines = stream_lines(args.input)
    classifier = load_classifiers(args.model, args.weights, cli_device(args), log=log)
    for chunk in chunked(lines, 256):
        for label, p in classifier.predict(chunk):
            print(f"{label}\t{p:.4f}", flush=True)


def cmd_plot_metrics(args: argparse.Namespace) -> None:
    from aiayn.run.files import METRICS
    from aiayn.run.paths import inside
    from aiayn.viz import plot_metrics

    run = Path(args.run_dir)
    if not (metrics := inside(run, METRICS)).exists():
        raise ValueError(f"{run}: no {METRICS} to plot")
    out = Path(args.out or run / "metrics.png")
    plot_metrics(metrics, out)
    print(out)


def cmd_plot_attention(args: argparse.Namespace) -> None:
    from aiayn.tasks.translation import load_translator
    from aiayn.viz import save_attention_maps

    translator = load_translator(args.model, args.weights, cli_device(args), log=log)
    maps = translator.attention(args.src, args.tgt)
    print(f"translation: {maps.translation}")
    out = Path(args.out or Path(args.model) / "attention")
    for path in save_attention_maps(maps.layers, args.layer, out):
        print(path)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from aiayn.families import FAMILIES, family
    from aiayn.run.config import read_run_config

    arch = read_run_config(args.model[0]).model.arch
    if family(arch).evaluate is None:
        scored = " and ".join(sorted(f.name for f in FAMILIES.values() if f.evaluate))
        raise ValueError(f"{args.model[0]} holds a {arch} model; evaluate scores {scored} models")
    family(arch).part("evaluate")(args)


def evaluate_classifier(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_labelled
    from aiayn.tasks.classification import load_classifiers

    if args.int8:
        raise ValueError("--int8 decodes translation models; this run is a classifier")
    texts, labels = read_labelled(args.src)
    classifier = load_classifiers(args.model, args.weights, cli_device(args), log=log)
    predicted = [label for label, _ in classifier.predict(texts)]
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "examples": len(labels)}))
    else:
        print(f"accuracy {100 * accuracy:.2f}% on {len(labels):,} examples")


def evaluate_translation(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_parallel
    from aiayn.evaluate import score_translations

    if len(args.model) > 1:
        raise ValueError(
            "several --model (an ensemble) are for classifiers, not encoder_decoder models"
        )
    if not args.ref:
        raise ValueError("--ref is needed to score a translation model")
    src, ref = read_parallel(args.src, args.ref)
    translator = cli_translator(args, args.model[0])
    scores = score_translations(translator.translate(src, args.beam), ref, args.lowercase)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}\n{scores['signature']}")


def cmd_demo(args: argparse.Namespace) -> None:
    from aiayn.demo import fresh_dir, report, run_demo

    cfg = RunConfig.load(args.config, args.set)
    if args.device is not None:  # else the config's train.device (auto unless set)
        cfg = cfg.replace("train", device=str(cli_device(args)))
    result = run_demo(cfg, fresh_dir(Path(args.out)), log=log)
    print(report(result, Path(cfg.data.test_src).name.split(".")[0]))


def cmd_import_hf(args: argparse.Namespace) -> None:
    from aiayn.interop.hf_run import import_run

    import_run(args.dir, args.out, args.tokenizer, log=log)
    print(args.out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error too (or set AIAYN_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train En->De for a few minutes, then show the results")
    demo.add_argument("--config", default="configs/demo.toml", help="(default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    demo.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    demo.add_argument("--device", help=f"{DEVICE_HELP} (default: the config's train.device)")
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

    prep = sub.add_parser("prepare", help="tokenize a translation config's data once, to disk")
    prep.add_argument("config", help="TOML config whose [data] names the files")
    prep.add_argument("--out", required=True, help="folder of the prepared dataset")
    prep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    prep.set_defaults(run=cmd_prepare)

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
        cmd.add_argument("--weights", help=WEIGHTS_HELP)
        cmd.add_argument("--int8", action="store_true", help="int8 linear layers (CPU)")
        add_device(cmd)
        if name == "translate":
            cmd.add_argument("--input", help="file of sentences, one a line (default: stdin)")
            cmd.add_argument("--engine", choices=("aiayn", "ct2"), default="aiayn")
            cmd.add_argument("--ct2", help="export-ct2's folder (default: MODEL/ct2)")
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
    gen.add_argument(
        "--prompt",
        action="append",
        help="text to continue (default: a newline); repeat it for a batch of prompts",
    )
    gen.add_argument(
        "--stop", action="append", default=[], help="end the text before this string (repeatable)"
    )
    gen.add_argument("--max-new-tokens", type=int, default=500, help="(default: %(default)s)")
    gen.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default: 0.8)")
    gen.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest; 0: all")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    gen.add_argument("--seed", type=int, help="the same seed gives the same text")
    gen.add_argument("--weights", help=WEIGHTS_HELP)
    add_device(gen)
    gen.set_defaults(run=cmd_generate)

    classify = sub.add_parser("classify", help="label each line (stdin or --input)")
    classify.add_argument("--model", required=True, action="append", help=ENSEMBLE_HELP)
    classify.add_argument("--input", help="file of texts, one a line (default: stdin)")
    classify.add_argument("--weights", help=WEIGHTS_HELP)
    add_device(classify)
    classify.set_defaults(run=cmd_classify)

    imp = sub.add_parser("import-hf", help="a Hugging Face BERT, GPT-2 or Marian as a run")
    imp.add_argument("dir", help="folder with config.json and model.safetensors")
    imp.add_argument("--out", required=True, help="run directory to write")
    imp.add_argument("--tokenizer", help="tokenizer.json to use (default: the one in DIR)")
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
    attn.add_argument("--weights", help=WEIGHTS_HELP)
    attn.add_argument("--out", help="folder for the PNGs (default: MODEL/attention)")
    add_device(attn)
    attn.set_defaults(run=cmd_plot_attention)

    from aiayn.ablate import add_parser as add_ablate
    from aiayn.decode.quantize import add_parser as add_quantize
    from aiayn.explain import add_parser as add_explain
    from aiayn.interop import add_parser as add_export_hf
    from aiayn.serve import add_parser as add_serve

    add_ablate(sub)
    add_explain(sub, add_device)
    add_export_hf(sub)
    add_quantize(sub)
    add_serve(sub, add_device)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    debug = args.debug or os.environ.get("AIAYN_DEBUG", "") not in ("", "0")
    try:
        check_args(p, args)  # every text a command takes from its user, at once
        args.run(args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        quiet_stdout()
        return 141
    except (ValueError, OSError, RecursionError) as e:
        if debug:
            traceback.print_exc()
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else e
        if isinstance(e, RecursionError):
            message = "input nested too deeply"
        print(f"aiayn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aiayn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    # stdout may be no file at all (tests capture it)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

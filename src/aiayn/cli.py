"""The `aiayn` command line. Errors in what the user gave become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from aiayn.config import RunConfig
from aiayn.configfile import apply_overrides, load_toml
from aiayn.models import ModelConfig, build_model


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
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} already holds files; pass --resume to continue that run "
            f"or choose another --out"
        )
    return cfg


def cmd_train(args: argparse.Namespace) -> None:
    from aiayn.tasks.translation import TranslationTask
    from aiayn.train.trainer import Trainer

    out = Path(args.out or Path("runs") / Path(args.config or "run").stem)
    cfg = run_config(args, out)
    if cfg.model.arch != "encoder_decoder":
        raise ValueError(f"model.arch={cfg.model.arch!r}: `aiayn train` handles encoder_decoder")
    torch.manual_seed(cfg.train.seed)  # the initial weights and dropout follow from the seed
    task = TranslationTask(cfg, out, resume=args.resume, log=log)
    trainer = Trainer(task, out, log=log)
    if args.resume:
        trainer.resume()
    trainer.fit()


def prompt(text: str) -> str:
    """Show `text` on stderr, then read a line from stdin ('' at end of input)."""
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def cmd_translate(args: argparse.Namespace) -> None:
    from aiayn.tasks.translation import load_translator

    lines = open(args.input, encoding="utf-8") if args.input else sys.stdin  # noqa: SIM115
    translator = load_translator(args.model, args.weights, log=log)
    if lines.isatty():  # a person typing: answer each line as it comes
        log("type a sentence and press Enter; Ctrl-D ends")
        while line := prompt("> "):
            print(translator.translate([line.rstrip("\n")], args.beam)[0], flush=True)
        return
    with lines:
        for text in translator.translate_stream(lines, args.beam):
            print(text, flush=True)


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
    from aiayn.viz import attention_figure, save_figure

    translator = load_translator(args.model, args.weights, log=log)
    maps = translator.attention(args.src, args.tgt)
    out = Path(args.out or Path(args.model) / "attention")
    out.mkdir(parents=True, exist_ok=True)
    print(f"translation: {maps.translation}")
    titles = {
        "encoder": "encoder self-attention",
        "decoder": "decoder self-attention",
        "cross": "encoder-decoder attention",
    }
    for kind, layers in maps.layers.items():
        if args.layer != "all" and not args.layer.isdigit():
            raise ValueError(f"--layer {args.layer!r} is neither a layer number nor all")
        chosen = sorted(layers) if args.layer == "all" else [int(args.layer)]
        for layer in chosen:
            if layer not in layers:
                raise ValueError(
                    f"--layer {layer} does not exist; the model has layers 0 to {max(layers)}"
                )
            weights, rows, cols = layers[layer]
            path = out / f"{kind}_layer{layer}.png"
            save_figure(
                attention_figure(weights, rows, cols, f"{titles[kind]}, layer {layer}"), path
            )
            print(path)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_parallel
    from aiayn.evaluate import score_translations
    from aiayn.tasks.translation import load_translator

    src, ref = read_parallel(args.src, args.ref)
    translator = load_translator(args.model, args.weights, log=log)
    scores = score_translations(translator.translate(src, args.beam), ref, args.lowercase)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}\n{scores['signature']}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

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
        ("evaluate", "BLEU and chrF of a model's translations"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--model", required=True, help="run directory")
        cmd.add_argument("--beam", type=int, help="beam size (1: greedy; default: the config's)")
        cmd.add_argument("--weights", help="model, best or average (default: the best there)")
        if name == "translate":
            cmd.add_argument("--input", help="file of sentences, one a line (default: stdin)")
            cmd.set_defaults(run=cmd_translate)
        else:
            cmd.add_argument("--src", required=True, help="source sentences, one a line")
            cmd.add_argument("--ref", required=True, help="reference translations, line-aligned")
            cmd.add_argument("--lowercase", action="store_true", help="case-insensitive scores")
            cmd.add_argument("--json", action="store_true", help="one JSON object on stdout")
            cmd.set_defaults(run=cmd_evaluate)
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

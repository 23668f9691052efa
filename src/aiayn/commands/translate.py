"""`aiayn translate`: translate lines (stdin or --input) to stdout; and the decoding options
it shares with `aiayn evaluate`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

from aiayn.commands.common import add_cuda_graph, add_device, add_weights, cli_device, log
from aiayn.decodeconfig import MAX_ALPHA, MAX_BEAM
from aiayn.safeio import check_text

if TYPE_CHECKING:
    from aiayn.decode.translate import Translator


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("translate", help="translate lines (stdin or --input) to stdout")
    cmd.add_argument("--model", required=True, help="run directory")
    add_decoding(cmd)
    cmd.add_argument("--input", help="file of sentences, one a line (default: stdin)")
    cmd.add_argument("--engine", choices=("aiayn", "ct2"), default="aiayn")
    cmd.add_argument("--ct2", help="export-ct2's folder (default: MODEL/ct2)")
    cmd.set_defaults(run=run)


def add_decoding(cmd: argparse.ArgumentParser) -> None:
    """The options `cli_translator` reads."""
    cmd.add_argument("--beam", type=int, help="beam size (1: greedy; default: the config's)")
    cmd.add_argument(
        "--alpha", type=float, help="beam search's length penalty (default: the config's)"
    )
    add_weights(cmd)
    cmd.add_argument("--int8", action="store_true", help="int8 linear layers (CPU)")
    add_device(cmd)
    add_cuda_graph(cmd, "the decoder's step")


def cli_translator(args: argparse.Namespace, model_dir: str) -> Translator:
    """The translator of `model_dir` with --weights, and --alpha instead of its config's."""
    from aiayn.tasks.translation import load_translator

    if args.beam is not None and not 1 <= args.beam <= MAX_BEAM:
        raise ValueError(f"--beam {args.beam} must be in [1, {MAX_BEAM}] (1: greedy search)")
    if args.alpha is not None and not 0 <= args.alpha <= MAX_ALPHA:  # NaN too
        raise ValueError(f"--alpha {args.alpha}: the length penalty must be in [0, {MAX_ALPHA:g}]")
    if args.cuda_graph and args.int8:
        raise ValueError("--int8 decodes on a CPU and --cuda-graph on CUDA; choose one")
    translator = load_translator(model_dir, args.weights, cli_device(args), log=log)
    translator.graph = args.cuda_graph
    if args.alpha is not None:
        translator.decode = dataclasses.replace(translator.decode, alpha=args.alpha)
    if getattr(args, "int8", False):
        from aiayn.decode.quantize import quantize_int8

        translator.model = quantize_int8(translator.model)
    return translator


def run(args: argparse.Namespace) -> None:
    from aiayn.data.text import stream_lines

    if args.engine == "ct2" and args.int8:  # refused before anything is loaded
        raise ValueError("--int8 is aiayn's own int8; give ct2 export-ct2's int8 model")
    if args.engine == "ct2" and args.cuda_graph:
        raise ValueError("--cuda-graph is aiayn's own decoding; ct2 runs its own")
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


def prompt(text: str) -> str:
    """Show `text` on stderr, then read a line from stdin ('' at end of input)."""
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()

"""`aiayn quantize`: a run with int8 linear layers, saved for a CPU (aiayn.decode.quantize)."""

from __future__ import annotations

import argparse

from aiayn.commands.common import add_weights, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("quantize", help="a run with int8 linear layers, saved for a CPU")
    cmd.add_argument("run_dir", help="run directory")
    cmd.add_argument("--out", required=True, help="folder to write (new or empty)")
    add_weights(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.decode.quantize_run import quantize_run

    print(quantize_run(args.run_dir, args.out, args.weights, log=log))

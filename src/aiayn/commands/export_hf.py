"""`aiayn export-hf`: a run as a Hugging Face model directory."""

from __future__ import annotations

import argparse

from aiayn.commands.common import add_weights, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("export-hf", help="a run as a Hugging Face model directory")
    cmd.add_argument("run_dir", help="run directory")
    cmd.add_argument("--out", required=True, help="folder to write (new or empty)")
    add_weights(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.interop.hf_export import export

    export(args.run_dir, args.out, args.weights, log=log)
    print(args.out)

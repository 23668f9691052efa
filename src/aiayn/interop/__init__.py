"""Weights in other formats: Hugging Face import and export, torch.nn.Transformer. The CLI's
parser for export is here so that `aiayn` imports none of it until the command runs."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("export-hf", help="a run as a Hugging Face model directory")
    cmd.add_argument("run_dir", help="run directory")
    cmd.add_argument("--out", required=True, help="folder to write (new or empty)")
    cmd.set_defaults(run=run_export_hf)


def run_export_hf(args: argparse.Namespace) -> None:
    from aiayn.cli import log
    from aiayn.interop.hf_export import export_run

    export_run(args.run_dir, args.out, log=log)
    print(args.out)

"""Weights in other formats: Hugging Face import and export, CTranslate2, torch.nn.Transformer.
The CLI's parsers for export are here so that `aiayn` imports none of it until the command runs."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("export-hf", help="a run as a Hugging Face model directory")
    cmd.add_argument("run_dir", help="run directory")
    cmd.add_argument("--out", required=True, help="folder to write (new or empty)")
    cmd.set_defaults(run=run_export_hf)
    ct2 = sub.add_parser("export-ct2", help="a translation run as a CTranslate2 model")
    ct2.add_argument("run_dir", help="run directory of an encoder-decoder")
    ct2.add_argument("--out", help="folder to write, new or empty (default: RUN_DIR/ct2)")
    ct2.add_argument("--quantization", default="float32", help="float32 (default) or int8")
    ct2.set_defaults(run=run_export_ct2)


def run_export_hf(args: argparse.Namespace) -> None:
    from aiayn.cli import log
    from aiayn.interop.hf_export import export

    export(args.run_dir, args.out, log=log)
    print(args.out)


def run_export_ct2(args: argparse.Namespace) -> None:
    from aiayn.cli import log
    from aiayn.interop.ct2 import export_ct2

    print(export_ct2(args.run_dir, args.out, args.quantization, log=log))

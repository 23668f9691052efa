"""`aiayn export-ct2`: a translation run as a CTranslate2 model."""

from __future__ import annotations

import argparse

from aiayn.commands.common import log


def add_parser(sub: argparse._SubParsersAction) -> None:
    ct2 = sub.add_parser("export-ct2", help="a translation run as a CTranslate2 model")
    ct2.add_argument("run_dir", help="run directory of an encoder-decoder")
    ct2.add_argument("--out", help="folder to write, new or empty (default: RUN_DIR/ct2)")
    ct2.add_argument("--quantization", default="float32", help="float32 (default) or int8")
    ct2.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.interop.ct2 import export_ct2

    print(export_ct2(args.run_dir, args.out, args.quantization, log=log))

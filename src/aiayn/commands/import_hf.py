"""`aiayn import-hf`: a Hugging Face BERT, GPT-2 or Marian as a run directory."""

from __future__ import annotations

import argparse

from aiayn.commands.common import log


def add_parser(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import-hf", help="a Hugging Face BERT, GPT-2 or Marian as a run")
    imp.add_argument("dir", help="folder with config.json and model.safetensors")
    imp.add_argument("--out", required=True, help="run directory to write")
    imp.add_argument("--tokenizer", help="tokenizer.json to use (default: the one in DIR)")
    imp.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.interop.hf_run import import_run

    import_run(args.dir, args.out, args.tokenizer, log=log)
    print(args.out)

"""`aiayn prepare`: tokenize a config's data once, to disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiayn.commands.common import add_set, log
from aiayn.config import RunConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    prep = sub.add_parser("prepare", help="tokenize a translation config's data once, to disk")
    prep.add_argument("config", help="TOML config whose [data] names the files")
    prep.add_argument("--out", required=True, help="folder of the prepared dataset")
    add_set(prep)
    prep.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.prepare.build import prepare

    prepare(RunConfig.load(args.config, args.set), Path(args.out), log=log)
    print(args.out)

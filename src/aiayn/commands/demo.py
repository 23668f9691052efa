"""`aiayn demo`: train En->De for a few minutes, then show the results."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiayn.commands.common import DEVICE_HELP, add_set, cli_device, log
from aiayn.config import RunConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="train En->De for a few minutes, then show the results")
    demo.add_argument("--config", default="configs/demo.toml", help="(default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    add_set(demo)
    demo.add_argument("--device", help=f"{DEVICE_HELP} (default: the config's train.device)")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.demo import fresh_dir, report, run_demo

    cfg = RunConfig.load(args.config, args.set)
    if args.device is not None:  # else the config's train.device (auto unless set)
        cfg = cfg.replace("train", device=str(cli_device(args)))
    result = run_demo(cfg, fresh_dir(Path(args.out)), log=log)
    print(report(result, Path(cfg.data.test_src).name.split(".")[0]))

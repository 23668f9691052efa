"""`aiayn params`: the parameter count of a config's model, part by part."""

from __future__ import annotations

import argparse

from aiayn.models import ModelConfig, build_model, parameter_breakdown


def add_parser(sub: argparse._SubParsersAction) -> None:
    params = sub.add_parser("params", help="print the parameter count of a config's model")
    params.add_argument("config", help="TOML config file with a [model] table")
    params.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    cfg = ModelConfig.from_toml(args.config)
    rows = parameter_breakdown(build_model(cfg, device="meta"))
    total = sum(n for _, n in rows)
    print(f"{cfg.arch}: {total:,} parameters ({total / 1e6:.1f}M)")
    for name, n in rows:
        print(f"  {name:<16}{n:>14,}")

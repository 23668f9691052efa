"""The `aiayn` command line. Errors in what the user gave become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torch import nn

from aiayn.models import ModelConfig, build_model


def parameter_breakdown(model: nn.Module) -> list[tuple[str, int]]:
    """(top-level part, parameters it adds) with shared matrices counted at first sight."""
    seen: set[int] = set()
    rows = []
    for name, child in model.named_children():
        fresh = [p for p in child.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if fresh:
            rows.append((name, sum(p.numel() for p in fresh)))
    return rows


def cmd_params(args: argparse.Namespace) -> None:
    cfg = ModelConfig.from_toml(args.config)
    rows = parameter_breakdown(build_model(cfg, device="meta"))
    total = sum(n for _, n in rows)
    print(f"{cfg.arch}: {total:,} parameters ({total / 1e6:.1f}M)")
    for name, n in rows:
        print(f"  {name:<16}{n:>14,}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    params = sub.add_parser("params", help="print the parameter count of a config's model")
    params.add_argument("config", help="TOML config file with a [model] table")
    params.set_defaults(run=cmd_params)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as e:
        print(f"aiayn {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0

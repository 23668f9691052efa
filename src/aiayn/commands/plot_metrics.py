"""`aiayn plot-metrics`: a run's loss, learning rate and BLEU as one picture."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    metrics = sub.add_parser("plot-metrics", help="plot loss, learning rate and BLEU of a run")
    metrics.add_argument("run_dir", help="run directory with metrics.jsonl")
    metrics.add_argument("--out", help="PNG path (default: RUN_DIR/metrics.png)")
    metrics.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.run.files import METRICS
    from aiayn.run.paths import inside
    from aiayn.viz import plot_metrics

    run_dir = Path(args.run_dir)
    if not (metrics := inside(run_dir, METRICS)).exists():
        raise ValueError(f"{run_dir}: no {METRICS} to plot")
    out = Path(args.out or run_dir / "metrics.png")
    plot_metrics(metrics, out)
    print(out)

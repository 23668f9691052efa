"""`aiayn merge`: an adapter run (LoRA) written as an ordinary run, its adapters folded into
the base's weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiayn.commands.common import add_weights, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("merge", help="an adapter (LoRA) run as an ordinary run, folded in")
    cmd.add_argument("run_dir", help="the adapter run's directory")
    cmd.add_argument("--out", required=True, help="folder to write (new or empty)")
    add_weights(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    print(merge_run(Path(args.run_dir), Path(args.out), args.weights))


def merge_run(run_dir: Path, out: Path, weights: str | None = None) -> Path:
    """Write `out` (new or empty): the model of adapter run `run_dir`, adapters folded in,
    with its config (no longer an adapter run) and the files its loader reads; loaded back by
    its family's loader before this returns. Returns the weights file."""
    from aiayn.decode.quantize_run import ASSETS, copy_assets
    from aiayn.families import family
    from aiayn.run.config import read_run_config, save_config
    from aiayn.run.files import CONFIG, MODEL
    from aiayn.run.folder import OutputFolder
    from aiayn.run.weights import save_weights
    from aiayn.tasks import load_run
    from aiayn.train.finetune import folded

    cfg = read_run_config(run_dir)
    if not cfg.train.lora_rank:
        raise ValueError(f"{run_dir}: not an adapter run (train.lora_rank = 0); nothing to merge")
    _, model = load_run(run_dir, cfg.model.arch, weights, log)
    with OutputFolder(out, "merge"):
        copy_assets(run_dir, out, ASSETS)
        save_config(folded(cfg), out / CONFIG)
        save_weights(model, out / MODEL)
        family(cfg.model.arch).part("loader")(out, log=lambda _: None)
    log(f"merged {run_dir} into {out}")
    return out / MODEL

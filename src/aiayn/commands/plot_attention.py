"""`aiayn plot-attention`: heatmaps of a translation's attention, one per layer and kind."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiayn.commands.common import add_device, add_weights, cli_device, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    attn = sub.add_parser("plot-attention", help="heatmaps of a translation's attention")
    attn.add_argument("--model", required=True, help="run directory")
    attn.add_argument("--src", required=True, help="the source sentence")
    attn.add_argument("--tgt", help="a target to read instead of the model's own translation")
    attn.add_argument("--layer", default="all", help="layer number from 0, or all (default)")
    add_weights(attn)
    attn.add_argument("--out", help="folder for the PNGs (default: MODEL/attention)")
    add_device(attn)
    attn.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.tasks.translation import load_translator
    from aiayn.viz import save_attention_maps

    translator = load_translator(args.model, args.weights, cli_device(args), log=log)
    maps = translator.attention(args.src, args.tgt)
    print(f"translation: {maps.translation}")
    out = Path(args.out or Path(args.model) / "attention")
    for path in save_attention_maps(maps.layers, args.layer, out):
        print(path)

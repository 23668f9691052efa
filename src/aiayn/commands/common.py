"""What the commands share: the log, the options several take, and the check of every text a
command is given."""

from __future__ import annotations

import argparse
import sys

import torch

from aiayn.run.files import WEIGHTS_HELP
from aiayn.safeio import check_text

ENSEMBLE_HELP = "run directory; a classifier's may repeat (an ensemble: mean probabilities)"
DEVICE_HELP = "auto (CUDA where there is one, else the CPU), cpu, cuda, cuda:N or mps"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_device(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: auto)")


def cli_device(args: argparse.Namespace) -> torch.device:
    """--device's, refused by name when --cuda-graph (`add_cuda_graph`) asks for CUDA."""
    from aiayn.device import pick_device

    device = pick_device(args.device, "--device")
    if getattr(args, "cuda_graph", False) and device.type != "cuda":
        raise ValueError(f"--cuda-graph needs a CUDA device; --device gave {device}")
    return device


def add_cuda_graph(cmd: argparse.ArgumentParser, what: str) -> None:
    cmd.add_argument(
        "--cuda-graph",
        action="store_true",
        help=f"replay {what} as a CUDA graph (CUDA; the same output to rounding)",
    )


def add_weights(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--weights", help=WEIGHTS_HELP)


def add_set(cmd: argparse.ArgumentParser, help: str | None = None) -> None:
    cmd.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every string among a command's parsed arguments, alone or in a list, checked by
    `check_text` under the name its user typed (`--prompt`, or a positional's name)."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            actions += action.choices[args.command]._actions
    for action in actions:
        value = getattr(args, action.dest, None)
        name = action.option_strings[-1] if action.option_strings else action.dest
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str):
                check_text(item, name)

"""`aiayn explain`: one sentence's trip through a translation model (aiayn.explain)."""

from __future__ import annotations

import argparse

from aiayn.commands.common import add_device, add_weights, cli_device, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("explain", help="one sentence's trip through a translation model")
    what = cmd.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="run directory")
    what.add_argument("--config", help="a config's model with random weights (and tokenizers "
                      "learnt from its training files)")  # fmt: skip
    cmd.add_argument("--src", required=True, help="the source sentence")
    cmd.add_argument("--tgt", help="a target to read instead of the model's own translation")
    add_weights(cmd)
    cmd.add_argument("--json", action="store_true", help="the trip as one JSON object")
    add_device(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import dataclasses
    import json

    from aiayn.explain import explain, random_translator, render
    from aiayn.tasks import place
    from aiayn.tasks.translation import load_translator

    translator = (
        load_translator(args.model, args.weights, "cpu", log=lambda _: None)
        if args.model
        else random_translator(args.config, log)
    )
    translator.model = place(translator.model, cli_device(args))
    translator.device = cli_device(args)
    trip = explain(translator.model, *translator.inputs(args.src, args.tgt))
    print(json.dumps(dataclasses.asdict(trip)) if args.json else render(trip))

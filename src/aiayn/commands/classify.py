"""`aiayn classify`: label each line (stdin or --input) with a classifier or an ensemble."""

from __future__ import annotations

import argparse

from aiayn.commands.common import ENSEMBLE_HELP, add_device, add_weights, cli_device, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    classify = sub.add_parser("classify", help="label each line (stdin or --input)")
    classify.add_argument("--model", required=True, action="append", help=ENSEMBLE_HELP)
    classify.add_argument("--input", help="file of texts, one a line (default: stdin)")
    add_weights(classify)
    add_device(classify)
    classify.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.data.text import chunked, stream_lines
    from aiayn.tasks.classification import load_classifiers

    lines = stream_lines(args.input)
    classifier = load_classifiers(args.model, args.weights, cli_device(args), log=log)
    for chunk in chunked(lines, 256):
        for label, p in classifier.predict(chunk):
            print(f"{label}\t{p:.4f}", flush=True)

"""`aiayn evaluate`: BLEU and chrF of a translation model, or a classifier's accuracy."""

from __future__ import annotations

import argparse
import json

from aiayn.commands.common import ENSEMBLE_HELP, cli_device, log
from aiayn.commands.translate import add_decoding, cli_translator


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser(
        "evaluate", help="BLEU and chrF of a translation model, or a classifier's accuracy"
    )
    cmd.add_argument("--model", required=True, action="append", help=ENSEMBLE_HELP)
    add_decoding(cmd)
    cmd.add_argument(
        "--src",
        required=True,
        help="source sentences, a classifier's labelled TSV, or a tagger's tagged file",
    )
    cmd.add_argument("--ref", help="reference translations, line-aligned")
    cmd.add_argument("--lowercase", action="store_true", help="case-insensitive scores")
    cmd.add_argument("--json", action="store_true", help="one JSON object on stdout")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.families import FAMILIES, family
    from aiayn.run.config import read_run_config

    arch = read_run_config(args.model[0]).model.arch
    if family(arch).evaluate is None:
        *others, last = sorted(f.name for f in FAMILIES.values() if f.evaluate)
        scored = f"{', '.join(others)} and {last}" if others else last
        raise ValueError(f"{args.model[0]} holds a {arch} model; evaluate scores {scored} models")
    family(arch).part("evaluate")(args)


def evaluate_classifier(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_labelled
    from aiayn.tasks.classification import load_classifiers

    for flag in ("int8", "cuda_graph"):
        if getattr(args, flag):
            name = flag.replace("_", "-")
            raise ValueError(f"--{name} decodes translation models; this run is a classifier")
    texts, labels = read_labelled(args.src)
    classifier = load_classifiers(args.model, args.weights, cli_device(args), log=log)
    predicted = [label for label, _ in classifier.predict(texts)]
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "examples": len(labels)}))
    else:
        print(f"accuracy {100 * accuracy:.2f}% on {len(labels):,} examples")


def evaluate_translation(args: argparse.Namespace) -> None:
    from aiayn.data.text import read_parallel
    from aiayn.evaluate import score_translations

    if len(args.model) > 1:
        raise ValueError(
            "several --model (an ensemble) are for classifiers, not encoder_decoder models"
        )
    if not args.ref:
        raise ValueError("--ref is needed to score a translation model")
    src, ref = read_parallel(args.src, args.ref)
    translator = cli_translator(args, args.model[0])
    scores = score_translations(translator.translate(src, args.beam), ref, args.lowercase)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}\n{scores['signature']}")

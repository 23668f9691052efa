"""`aiayn tag`: one tag a word, for sentences a line (words split at spaces) or CoNLL-U; and the
tagger's `aiayn evaluate`: word accuracy, and span scores when the tags are BIO."""

from __future__ import annotations

import argparse
import json
import sys

from aiayn.commands.common import add_device, add_weights, cli_device, log

CHUNK = 256  # sentences tagged at a time: the output streams


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("tag", help="tag each word of each line (stdin or --input) or CoNLL-U")
    cmd.add_argument("--model", required=True, help="the run directory of a tagger")
    cmd.add_argument("--input", help="sentences, one a line (default: stdin)")
    cmd.add_argument(
        "--conllu",
        action="store_true",
        help="the input is CoNLL-U: written back with the run's tag column filled",
    )
    add_weights(cmd)
    add_device(cmd)
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.data.tagged import conllu_text, parse_tagged
    from aiayn.data.text import chunked, stream_lines
    from aiayn.run.config import read_run_config
    from aiayn.tasks.tagging import load_tagger

    lines = stream_lines(args.input)
    tagger = load_tagger(args.model, args.weights, cli_device(args), log=log)
    if args.conllu:
        column = read_run_config(args.model).data.tag_column
        name = args.input or "stdin"
        for chunk in chunked(parse_tagged(lines, name, "conllu", column), CHUNK):
            tags = tagger.tag([s.words for s in chunk])
            sys.stdout.write(conllu_text(chunk, tags, column))
            sys.stdout.flush()
        return
    for chunk in chunked(lines, CHUNK):
        sentences = [line.split() for line in chunk]
        for words, tags in zip(sentences, tagger.tag(sentences), strict=True):
            print(" ".join(f"{w}/{t}" for w, t in zip(words, tags, strict=True)), flush=True)


def evaluate_tagger(args: argparse.Namespace) -> None:
    """`aiayn evaluate --model RUN --src FILE` for a tagger: FILE in the run's data format."""
    from aiayn.evaluate import is_bio, span_scores
    from aiayn.run.config import read_run_config
    from aiayn.tasks.tagging import load_tagger, read_sentences, tag_indices

    if len(args.model) > 1 or args.int8 or args.cuda_graph:
        raise ValueError(
            "a tagger is evaluated alone (one --model) with its float weights and without "
            "--cuda-graph, a translation model's"
        )
    tagger = load_tagger(args.model[0], args.weights, cli_device(args), log=log)
    sentences = read_sentences(read_run_config(args.model[0]), args.src)
    tag_indices(sentences, tagger.labels, args.src)  # a tag the run never saw is an error
    gold = [s.tags for s in sentences]
    predicted = tagger.tag([s.words for s in sentences])
    pairs = [
        pair for gs, ps in zip(gold, predicted, strict=True) for pair in zip(gs, ps, strict=True)
    ]
    scores = {"accuracy": sum(g == p for g, p in pairs) / len(pairs), "words": len(pairs)}
    if is_bio(set(tagger.labels)):
        scores["spans"] = span_scores(gold, predicted)
    if args.json:
        print(json.dumps(scores))
        return
    print(f"word accuracy {100 * scores['accuracy']:.2f}% on {len(pairs):,} words")
    if "spans" in scores:
        s = scores["spans"]
        print(
            f"spans: precision {100 * s['precision']:.2f}  recall {100 * s['recall']:.2f}  "
            f"F1 {100 * s['f1']:.2f} ({s['spans']:,} spans)"
        )

"""Scores: translation quality with sacreBLEU (BLEU, detokenized and cased unless asked, and
chrF); a tagger's word accuracy and its BIO spans' precision, recall and F1."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF

BIO = re.compile(r"O|[BI]-.+")


def score_translations(
    hypotheses: list[str], references: list[str], lowercase: bool = False
) -> dict[str, float | str]:
    """{"bleu", "chrf", "signature"} for hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    bleu, chrf = BLEU(lowercase=lowercase), CHRF(lowercase=lowercase)
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    signature = f"BLEU {bleu.get_signature()} | chrF {chrf.get_signature()}"
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "signature": signature}


def is_bio(tags: set[str]) -> bool:
    """Whether `tags` are all BIO tags ("O", "B-TYPE", "I-TYPE") with a span among them."""
    return all(BIO.fullmatch(t) for t in tags) and tags != {"O"}


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) spans of one sentence's BIO tags, read as CoNLL's conlleval and
    seqeval's default mode read them: a span starts at B-, or at an I- that follows O or
    another type (malformed BIO), and runs over the I- of its type that follow."""
    spans, start, kind = set(), 0, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, new = tag.partition("-")
        if kind and (prefix != "I" or new != kind):  # the open span ends before i
            spans.add((kind, start, i - 1))
            kind = ""
        if prefix == "B" or (prefix == "I" and new != kind):
            start, kind = i, new
    return spans


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Micro-averaged span precision, recall and F1 (each 0 where undefined), as seqeval's."""
    found = expected = correct = 0
    for g, p in zip(gold, predicted, strict=True):
        want, got = bio_spans(g), bio_spans(p)
        found, expected, correct = found + len(got), expected + len(want), correct + len(want & got)
    precision = correct / found if found else 0.0
    recall = correct / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "spans": expected}

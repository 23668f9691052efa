"""BPE-dropout for taggers: the segmenter against `tokenizers`' own BPE, and the tagging task's
rows drawn afresh each epoch, the same again for the same epoch (so a resume replays them)."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from aiayn.config import RunConfig
from aiayn.data.noise import BpeDropout
from aiayn.data.tokenizer import fit_tokenizer
from aiayn.tasks.tagger import IGNORE
from aiayn.tasks.tagging import TaggingTask
from tests.tasks.test_tagging import quiet, tagger_config


def random_words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    stems = ["walk", "talk", "organ", "nation", "un", "re", "believ"]
    ends = ["", "s", "ed", "ing", "ly", "ation", "ably"]
    letters = string.ascii_letters + "éß'-"
    return [
        rng.choice(stems) + rng.choice(ends)
        if rng.random() < 0.7
        else "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
        for _ in range(n)
    ]


def test_with_no_dropout_it_is_the_tokenizers_own_bpe() -> None:
    tok = fit_tokenizer("bpe", [" ".join(random_words(3000, 0))], 300, punctuation=False)
    words = sorted(set(random_words(2000, 1)) | {"ünseen", "€uro", "x", "two words", "ﬁne"})
    segmenter = BpeDropout(tok)
    assert [segmenter.pieces(w, 0.0, random.Random(0)) for w in words] == tok.encode(words)


def test_dropped_merges_cut_the_same_word_finer_and_a_seed_draws_the_same() -> None:
    tok = fit_tokenizer("bpe", [" ".join(random_words(3000, 0))], 300, punctuation=False)
    segmenter, words = BpeDropout(tok), sorted(set(random_words(300, 2)))
    whole = tok.encode(words)
    drawn = [segmenter.pieces(w, 0.3, random.Random(7)) for w in words]
    assert drawn == [segmenter.pieces(w, 0.3, random.Random(7)) for w in words]
    assert sum(map(len, drawn)) > sum(map(len, whole))
    for word, pieces in zip(words, drawn, strict=True):
        assert "".join(tok.tok.id_to_token(i) for i in pieces) == "▁" + word


def test_a_tagger_whose_tokenizer_is_not_bpe_is_refused_by_name(tmp_path: Path) -> None:
    path = tagger_config(tmp_path, subword_dropout=0.1)
    path.write_text(path.read_text().replace("[data]", '[data]\ntokenizer = "word"'))
    cfg = RunConfig.load(path)
    with pytest.raises(ValueError, match=r"train.subword_dropout=0.1: BPE-dropout needs a BPE"):
        TaggingTask(cfg, tmp_path, resume=False, log=quiet)


def test_a_taggers_rows_are_drawn_afresh_each_epoch_and_again_alike(tmp_path: Path) -> None:
    cfg = RunConfig.load(tagger_config(tmp_path, subword_dropout=0.5))
    task = TaggingTask(cfg, tmp_path, resume=False, log=quiet)
    plain = list(task.rows)
    task.epoch_batches(0)
    first, labels = list(task.rows), list(task.labels)
    task.epoch_batches(1)
    assert task.rows != first
    task.epoch_batches(0)
    assert (task.rows, task.labels) == (first, labels)
    assert sum(map(len, first)) > sum(map(len, plain))
    for row, label, words, tags in zip(first, labels, task.words, task.tags, strict=True):
        assert [t for t in label if t != IGNORE] == tags  # one tag a word, on its first piece
        assert len(row) == len(label) and len(words) == len(tags)


def test_subword_dropout_is_refused_for_a_family_that_does_not_read_it() -> None:
    data = {"model": {"arch": "encoder_classifier"}, "train": {"subword_dropout": 0.1}}
    with pytest.raises(ValueError, match=r"train.subword_dropout=0.1 is not read by model.arch"):
        RunConfig.from_dict(data)

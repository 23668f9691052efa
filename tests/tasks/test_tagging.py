"""The tagger family: files of tagged words, tags on first subwords, the loss, batching, scores."""

from __future__ import annotations

import gzip
import random
import warnings
from pathlib import Path

import pytest
import tomli_w
import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.data.tagged import read_tagged
from aiayn.data.tokenizer import TextTokenizer
from aiayn.evaluate import bio_spans, span_scores
from aiayn.tasks.tagger import IGNORE, WordPieces, frame, labelled_row
from aiayn.tasks.tagging import TaggingTask, load_tagger

CONLLU = """# sent_id = 1
# text = The cats sat.
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcats\tcat\tNOUN\tNNS\t_\t3\tnsubj\t_\t_
3-4\tsat.\t_\t_\t_\t_\t_\t_\t_\t_
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tDogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\t_
"""
WORDS = ["the", "cat", "sat", "on", "the", "mat", ".", "a", "dog", "saw", "a", "mat"]
TAGS = {"the": "DET", "a": "DET", "cat": "NOUN", "mat": "NOUN", "dog": "NOUN", "sat": "VERB"}


def quiet(_: str) -> None:
    pass


def write_conllu(path: Path, sentences: list[list[str]]) -> Path:
    lines = []
    for words in sentences:
        lines.append("# a comment")
        for i, w in enumerate(words, start=1):
            lines.append(f"{i}\t{w}\t_\t{TAGS.get(w, 'X')}\t_\t_\t_\t_\t_\t_")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def corpus(n: int = 24, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(2, 9))] for _ in range(n)]


def tagger_config(folder: Path, **train: object) -> Path:
    data = write_conllu(folder / "train.conllu", corpus())
    config = {
        "version": 2,
        "data": {
            "train_tagged": str(data),
            "valid_tagged": str(data),
            "vocab_size": 40,
            "tag_len": 24,
        },
        "model": {
            "arch": "encoder_tagger",
            "d_model": 16,
            "n_heads": 2,
            "d_ff": 32,
            "n_layers": 1,
            "dropout": 0.0,
            "max_len": 24,
        },
        "train": {
            "max_steps": 4,
            "eval_every": 4,
            "log_every": 2,
            "batch_tokens": 200,
            "warmup": 2,
            "label_smoothing": 0.0,
            **train,
        },
    }
    path = folder / "tagger.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagger")
    out = folder / "run"
    assert main(["train", str(tagger_config(folder)), "--out", str(out)]) == 0
    return out


def bert_pieces() -> TextTokenizer:
    """A BERT-style word-piece tokenizer, which drops control characters."""
    vocab = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "the", "cat", "un", "##believ", "##ably", "##s"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return TextTokenizer(tok)


def test_conllu_skips_comments_multiword_ranges_and_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "a.conllu.gz"
    path.write_bytes(gzip.compress(CONLLU.encode()))
    first, second = read_tagged(path)
    assert (first.words, first.tags, first.line) == (
        ["The", "cats", "sat", "."],
        ["DET", "NOUN", "VERB", "PUNCT"],
        3,
    )
    assert (second.words, second.tags) == (["Dogs", "bark"], ["NOUN", "VERB"])
    assert read_tagged(path, column=5)[1].tags == ["NNS", "VBP"]


def test_two_columns_with_blank_lines_between_sentences(tmp_path: Path) -> None:
    path = tmp_path / "ner.txt"
    path.write_text("-DOCSTART-\tO\n\nEU\tB-ORG\nrejects\tO\n\n\nPeter\tB-PER\n", "utf-8")
    sentences = read_tagged(path, "columns")
    assert [(s.words, s.tags) for s in sentences] == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["Peter"], ["B-PER"]),
    ]


@pytest.mark.parametrize(
    ("text", "fmt", "error"),
    [
        ("1\tThe\tthe\tDET\n", "conllu", "line 1 has 4 tab-separated columns; CoNLL-U has 10"),
        ("EU\tB-ORG\tx\n", "columns", "line 1: 3 tab-separated columns; expected word<TAB>tag"),
        ("# only a comment\n\n1" + "\tx" * 9 + "\n", "conllu", "line 2: a sentence without"),
        ("\u00b2" + "\tx" * 9 + "\n", "conllu", "line 1: ID '\u00b2' is not a word number"),
        ("\n\n", "conllu", "no tagged word in it"),
        ("-DOCSTART-\n\n", "columns", "no tagged word in it"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, fmt: str, error: str) -> None:
    path = tmp_path / "bad"
    path.write_text(text, "utf-8")
    with pytest.raises(ValueError, match=f"^{path}: {error}"):
        read_tagged(path, fmt)


def test_the_word_cache_keeps_no_long_word() -> None:
    """A server's tagger keeps what clients send in its cache: a word of 10,000 characters a
    time would hold gigabytes (a million of them) before the cache starts afresh."""
    tok = bert_pieces()
    split, long = WordPieces(tok), "the" * 3000
    assert split(["cat", long, "cat"]) == [[5], [tok.unk_id], [5]]
    assert split([long]) == [[tok.unk_id]] and list(split.cache) == ["cat"]


def test_tags_sit_on_first_pieces_of_words_in_one_two_many_and_no_pieces() -> None:
    tok = bert_pieces()
    words = ["the", "cats", "unbelievably", "\x07", "cat"]
    pieces = WordPieces(tok)(words)
    assert [len(p) for p in pieces] == [1, 2, 3, 1, 1]
    assert pieces[3] == [tok.unk_id]  # dropped by the tokenizer: one <unk> stands for it
    row, firsts = frame(pieces, tok, 32)
    assert row == [tok.bos_id, *(i for p in pieces for i in p), tok.eos_id]
    assert firsts == [1, 2, 4, 7, 8]
    assert labelled_row(row, firsts, [5, 6, 7, 8, 9]) == [
        IGNORE,
        5,
        6,
        IGNORE,
        7,
        IGNORE,
        IGNORE,
        8,
        9,
        IGNORE,
    ]
    # too long for the model: each word keeps its first piece, which carries its tag
    assert frame(pieces, tok, 8) == (
        [tok.bos_id, *(p[0] for p in pieces), tok.eos_id],
        [1, 2, 3, 4, 5],
    )


def test_loss_is_cross_entropy_over_first_pieces_only(tmp_path: Path) -> None:
    cfg = RunConfig.load(tagger_config(tmp_path))
    task = TaggingTask(cfg, tmp_path, resume=False, log=quiet)
    task.model.eval()
    batch = task.collate([0, 1, 2, 3])
    loss, nll, words = task.train_loss(batch, torch.device("cpu"), task.model)
    sentences = read_tagged(tmp_path / "train.conllu")[:4]
    index = {t: i for i, t in enumerate(task.tagger.labels)}
    expected, count = 0.0, 0
    for s in sentences:  # each alone, unpadded, its words' first pieces gathered by hand
        ((row, firsts),) = task.tagger.rows([s.words])[0]
        logits = task.model(torch.tensor([row]))[0, firsts]
        gold = torch.tensor([index[t] for t in s.tags])
        expected += F.cross_entropy(logits, gold, reduction="sum").item()
        count += len(s.words)
    assert words == count
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert nll.item() == pytest.approx(expected, rel=1e-5)


def test_predictions_per_word_do_not_depend_on_the_batch(tagger_run: Path) -> None:
    tagger = load_tagger(tagger_run, log=quiet)
    sentence = ["the", "cat", "sat", "on", "a", "mat"]
    alone = tagger.probabilities([sentence])[0]
    shorter, longer = ["dog"], [*sentence, ".", "a", "dog", "saw", "the", "mat", "."]
    batched = tagger.probabilities([longer, sentence, shorter])[1]
    assert alone.shape == (len(sentence), len(tagger.labels))
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_a_sentence_longer_than_the_model_is_tagged_in_runs(tagger_run: Path) -> None:
    tagger = load_tagger(tagger_run, log=quiet)
    words = corpus(1, seed=3)[0] * 8  # 24 tokens a row: runs of 22 words
    tags = tagger.tag([words])[0]
    assert len(tags) == len(words)
    assert tags[:22] == tagger.tag([words[:22]])[0]


def test_span_scores_equal_seqeval_on_random_malformed_bio() -> None:
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    warnings.simplefilter("ignore")  # seqeval warns of undefined scores (no spans)
    for _ in range(300):
        gold = [[rng.choice(tags) for _ in range(rng.randint(0, 7))] for _ in range(3)]
        predicted = [[rng.choice(tags) for _ in sentence] for sentence in gold]
        ours = span_scores(gold, predicted)
        assert ours["precision"] == pytest.approx(precision_score(gold, predicted), abs=1e-12)
        assert ours["recall"] == pytest.approx(recall_score(gold, predicted), abs=1e-12)
        assert ours["f1"] == pytest.approx(f1_score(gold, predicted), abs=1e-12)
    assert bio_spans(["I-PER", "I-PER", "B-PER", "I-LOC", "O"]) == {
        ("PER", 0, 1),
        ("PER", 2, 2),
        ("LOC", 3, 3),
    }


def test_tag_writes_word_slash_tag_and_conllu(tagger_run: Path, tmp_path: Path, capsys) -> None:
    tagger = load_tagger(tagger_run, log=quiet)
    (tmp_path / "in.txt").write_text("the cat sat\n\ndog\n", "utf-8")
    assert main(["tag", "--model", str(tagger_run), "--input", str(tmp_path / "in.txt")]) == 0
    expected = [tagger.tag([["the", "cat", "sat"]])[0], [], tagger.tag([["dog"]])[0]]
    lines = [
        " ".join(f"{w}/{t}" for w, t in zip(ws, ts, strict=True))
        for ws, ts in zip([["the", "cat", "sat"], [], ["dog"]], expected, strict=True)
    ]
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in lines)
    (tmp_path / "in.conllu").write_text(CONLLU, "utf-8")
    assert (
        main(
            ["tag", "--model", str(tagger_run), "--conllu", "--input", str(tmp_path / "in.conllu")]
        )
        == 0
    )
    out = capsys.readouterr().out
    written = read_tagged_text(tmp_path / "out.conllu", out)
    assert [s.tags for s in written] == tagger.tag([s.words for s in written])
    assert "3-4\tsat.\t_\t_" in out and "3.1\tgone\tgo\tVERB" in out and "# text = " in out


def read_tagged_text(path: Path, text: str):
    path.write_text(text, "utf-8")
    return read_tagged(path)


def test_evaluate_scores_word_accuracy(tagger_run: Path, tmp_path: Path, capsys) -> None:
    data = tagger_run.parent / "train.conllu"
    assert main(["evaluate", "--model", str(tagger_run), "--src", str(data), "--json"]) == 0
    sentences = read_tagged(data)
    predicted = load_tagger(tagger_run, log=quiet).tag([s.words for s in sentences])
    pairs = [
        (g, p)
        for s, ps in zip(sentences, predicted, strict=True)
        for g, p in zip(s.tags, ps, strict=True)
    ]
    accuracy = sum(g == p for g, p in pairs) / len(pairs)
    assert capsys.readouterr().out == f'{{"accuracy": {accuracy}, "words": {len(pairs)}}}\n'


@pytest.mark.parametrize("flag", ["--int8", "--cuda-graph"])
def test_evaluate_refuses_a_translation_models_decoding_flags(tagger_run, capsys, flag):
    data = tagger_run.parent / "train.conllu"
    assert main(["evaluate", "--model", str(tagger_run), "--src", str(data), flag]) == 2
    err = capsys.readouterr().err
    assert "a tagger is evaluated alone" in err and err.count("\n") == 1


def test_evaluate_refuses_a_tag_unseen_in_training(tagger_run: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tcat\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n1\tcat\t_\tADJ\t_\t_\t_\t_\t_\t_\n")
    assert main(["evaluate", "--model", str(tagger_run), "--src", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        f"aiayn evaluate: error: {bad}: sentence at line 3: tag 'ADJ' was not seen in training"
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"tagged_format": "iob"}, "data.tagged_format='iob' is invalid; expected one of conllu"),
        ({"tag_column": 11}, "data.tag_column=11 is invalid; expected a CoNLL-U column"),
        ({"train_tsv": "a.tsv"}, "data.train_tsv='a.tsv' is not read by model.arch = "),
    ],
)
def test_a_taggers_bad_data_fields_are_refused_by_name(data: dict, error: str) -> None:
    with pytest.raises(ValueError, match=f"^{error}"):
        RunConfig.from_dict({"version": 2, "model": {"arch": "encoder_tagger"}, "data": data})


def test_an_unexportable_tagger_is_refused_naming_its_class(tagger_run, tmp_path, capsys):
    assert main(["export-hf", str(tagger_run), "--out", str(tmp_path / "hf")]) == 2
    assert ": BertForTokenClassification needs " in capsys.readouterr().err

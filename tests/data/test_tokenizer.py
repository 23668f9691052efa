import pytest

from aiayn.data.tokenizer import TextTokenizer, train_bpe

CORPUS = [
    "A man rides a bike down the street.",
    "Two dogs play in the snow, happily!",
    "Ein Mann fährt mit dem Fahrrad die Straße entlang.",
    "Zwei Hunde spielen im Schnee.",
] * 20


def test_bpe_round_trips_text_and_reserves_special_ids():
    tok = train_bpe(CORPUS, vocab_size=200)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    ids = tok.encode(CORPUS[:4])
    assert all(i >= 4 for row in ids for i in row)
    assert tok.decode(ids) == CORPUS[:4]


def test_bpe_splits_rare_words_into_known_pieces():
    tok = train_bpe(CORPUS, vocab_size=200)
    assert tok.vocab_size <= 200
    [ids] = tok.encode(["Hunde rides"])
    assert tok.unk_id not in ids
    assert tok.decode([ids]) == ["Hunde rides"]


def test_lowercase_option_normalises_case():
    tok = train_bpe(CORPUS, vocab_size=200, lowercase=True)
    assert tok.decode(tok.encode(["A Man"])) == ["a man"]


def test_saved_tokenizer_loads_and_encodes_the_same(tmp_path):
    tok = train_bpe(CORPUS, vocab_size=150)
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(CORPUS[:3]) == tok.encode(CORPUS[:3])


def test_unreadable_tokenizer_file_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a readable tokenizer file"):
        TextTokenizer.load(tmp_path / "tokenizer.json")

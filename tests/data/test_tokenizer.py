import pytest

from aiayn.data.tokenizer import TextTokenizer, fit_tokenizer, train_bpe

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


def test_character_tokenizer_round_trips_every_character(tmp_path) -> None:
    from aiayn.data.tokenizer import TextTokenizer, train_chars

    text = "First Citizen:\nBefore we  proceed, hear me speak.\n"
    tok = train_chars([text])
    assert tok.vocab_size == 4 + len(set(text))
    ids = tok.encode([text])[0]
    assert len(ids) == len(text)
    assert tok.decode([ids]) == [text]
    tok.save(tmp_path / "t.json")
    again = TextTokenizer.load(tmp_path / "t.json")
    assert again.encode([text]) == [ids] and again.tokens(ids[:2]) == ["F", "i"]
    assert tok.encode(["Q"])[0] == [tok.unk_id]  # unseen characters are <unk>


def test_unknown_tokenizer_kind_is_named() -> None:
    from aiayn.data.tokenizer import fit_tokenizer

    with pytest.raises(ValueError, match=r"data\.tokenizer='wordpiece' is unknown"):
        fit_tokenizer("wordpiece", ["a b"], 10)


def test_word_tokenizer_keeps_the_most_frequent_words_and_round_trips() -> None:
    from aiayn.data.tokenizer import fit_tokenizer

    texts = ["Good film."] * 5 + ["bad film."] * 4 + ["dull plot"] * 2
    tok = fit_tokenizer("word", texts, vocab_size=4 + 4, lowercase=True)
    assert tok.vocab_size == 8  # film, ".", good, bad: "dull" and "plot" are left out
    [ids] = tok.encode(["GOOD film, dull."])
    assert tok.tokens(ids) == ["▁good", "▁film", "<unk>", "<unk>", "."]
    assert tok.decode(tok.encode(["bad film. good film."])) == ["bad film. good film."]


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_encode_gives_the_ids_of_the_full_encoding(kind):
    from aiayn.data.tokenizer import fit_tokenizer

    texts = ["a man rides a bike.", "Ein Mann fährt Rad!", "", "  two  spaces\n"] * 5
    tok = fit_tokenizer(kind, texts, vocab_size=60)
    full = [e.ids for e in tok.tok.encode_batch(texts, add_special_tokens=False)]
    assert tok.encode(texts) == full and any(full)


def test_prompts_keep_what_a_template_puts_before_the_text_not_after() -> None:
    from tokenizers import processors

    tok = train_bpe(["the cat sat on the mat"] * 20, vocab_size=40)
    plain = tok.encode(["the cat"])[0]
    assert tok.encode_prompts(["the cat"]) == [plain]  # aiayn's own: no template
    tok.tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_id), ("</s>", tok.eos_id)]
    )
    assert tok.encode_prompts(["the cat", ""]) == [[tok.bos_id, *plain], []]


LITERALS = "<pad> <s> </s> <unk> <|endoftext|>"


@pytest.mark.parametrize("kind", ["bpe", "word", "char", "byte_level"])
def test_special_token_names_in_text_are_ordinary_text(kind, tmp_path) -> None:
    """ "<pad>" in data or a prompt is text: never the padding id (hidden from the loss), an
    end of sequence, or a frame; it encodes to ordinary ids and decodes back to itself."""
    text = f"the cat {LITERALS} sat"
    if kind == "byte_level":
        from tests.byte_level import byte_level_tokenizer

        tok = byte_level_tokenizer()
    else:
        tok = fit_tokenizer(kind, [text] * 4 + CORPUS, 200)
    tok.save(tmp_path / "tok.json")
    for t in (tok, TextTokenizer.load(tmp_path / "tok.json")):
        [ids] = t.encode([text])
        specials = {t.pad_id, t.bos_id, t.eos_id, t.unk_id}
        assert not specials & set(ids), t.tokens(ids)
        assert t.decode([ids]) == [text]
        [prompt] = t.encode_prompts([text])
        assert not specials & set(prompt)


def test_a_tokenizer_file_that_pads_and_truncates_encodes_each_text_whole(tmp_path):
    """sentence-transformers' tokenizer.json pads every text to 128 and cuts it there; aiayn
    pads its batches and cuts texts itself."""
    tok = train_bpe(CORPUS, vocab_size=200)
    plain = tok.encode(CORPUS[:2])
    tok.tok.enable_padding(length=64, pad_id=tok.pad_id)
    tok.tok.enable_truncation(max_length=3)
    tok.tok.save(str(tmp_path / "tokenizer.json"))
    assert TextTokenizer.load(tmp_path / "tokenizer.json").encode(CORPUS[:2]) == plain
    assert all(3 < len(row) < 64 for row in plain)

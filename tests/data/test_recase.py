import pytest

from aiayn.data.recase import Recaser

TRAIN = [
    "Ein Junge spielt im Park.",
    "Der Junge läuft mit einem Hund.",
    "Eine junge Frau liest ein Buch.",
    "Zwei junge Männer sitzen im Park.",
    "Die junge Frau trinkt Kaffee.",
    "Ein Mann und ein Junge essen.",
    "Der Junge trinkt Wasser.",
    "Ein Hund läuft im Schnee.",
    "Eine junge Katze schläft.",
    "Drei junge Hunde spielen im Schnee.",
]


@pytest.fixture(scope="module")
def recaser() -> Recaser:
    return Recaser.fit(TRAIN)


def test_restores_the_training_text(recaser: Recaser) -> None:
    for line in TRAIN:
        assert recaser(line.lower()) == line


def test_previous_word_decides_between_forms(recaser: Recaser) -> None:
    # "junge" is an adjective after "eine" and "zwei" but the noun after "der" and "ein".
    assert recaser("ein junge und eine junge frau.") == "Ein Junge und eine junge Frau."


def test_unseen_words_take_the_case_of_rare_words() -> None:
    # Most words seen once are capitalised nouns in German (Mann, Hut, Hund, Tasche), not in
    # English.
    german = Recaser.fit(["Ein Mann mit Hut und Hund.", "Eine Frau mit Tasche."])
    assert german("ein mann mit katze.") == "Ein Mann mit Katze."
    english = Recaser.fit(["The dog runs.", "A man sits on a bench.", "The dog sleeps."])
    assert english("the cat sleeps.") == "The cat sleeps."


def test_first_word_is_capitalised_after_punctuation(recaser: Recaser) -> None:
    assert recaser('"ein hund läuft."') == '"Ein Hund läuft."'
    assert recaser("") == ""


def test_save_and_load_round_trip(recaser: Recaser, tmp_path) -> None:
    (tmp_path / "recaser.json").write_text(recaser.to_json(), encoding="utf-8")
    again = Recaser.load(tmp_path / "recaser.json")
    line = "zwei junge männer und ein junge trinkt kaffee im schnee."
    assert (
        again(line) == recaser(line) == "Zwei junge Männer und ein Junge trinkt Kaffee im Schnee."
    )


def test_unreadable_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "recaser.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a readable recaser file"):
        Recaser.load(path)


def test_a_recaser_file_too_large_to_be_one_is_refused_before_reading(tmp_path, monkeypatch):
    import os

    import pytest

    from aiayn.data import recase

    path = tmp_path / "recaser.json"
    path.write_text("{}")
    monkeypatch.setattr(recase, "MAX_FILE_BYTES", 1)
    with pytest.raises(ValueError, match=r"recaser\.json: larger than 1 bytes"):
        recase.Recaser.load(path)
    assert os.path.getsize(path) == 2

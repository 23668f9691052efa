from pathlib import Path

from aiayn.cli import main
from aiayn.data.tokenizer import TextTokenizer
from tests.cli_helpers import write_config

NOUNS = ("mann", "hund", "katze", "ball", "frau")


def capitalise_german(line: str) -> str:
    """German case for the toy corpus: nouns and the first word capitalised."""
    cased = " ".join(w.capitalize() if w in NOUNS else w for w in line.split())
    return cased[:1].upper() + cased[1:]


def test_a_model_trained_on_lowercased_text_writes_cased_output(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, max_steps=100)
    for split in ("train", "valid"):
        path = tmp_path / f"{split}.tgt"
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join(map(capitalise_german, lines)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", str(config), "--out", str(out), "--set", "data.lowercase=true"]
    assert main(args) == 0
    assert (out / "recaser.json").exists()
    tok = TextTokenizer.load(out / "tokenizer.json")
    assert tok.encode(["Ein Mann"]) == tok.encode(["ein mann"])  # the model sees lowercase
    (tmp_path / "in.txt").write_text("a man and the dog\nthe woman sees a cat\n")
    capsys.readouterr()
    assert main(["translate", "--model", str(out), "--input", str(tmp_path / "in.txt")]) == 0
    translations = capsys.readouterr().out.splitlines()
    assert len(translations) == 2
    for line in translations:
        assert line[:1].isupper(), line
        assert not set(line.split()) & set(NOUNS), line
        assert line.lower() != line

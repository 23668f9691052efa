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


def test_special_token_names_in_sentence_pairs_are_text(tmp_path: Path) -> None:
    """A "</s>" or "<pad>" in a training or validation sentence neither ends it early nor
    hides a target from the loss: each side's only special ids are those framing it."""
    from aiayn.config import RunConfig
    from aiayn.tasks.translation import TranslationTask

    config = write_config(tmp_path)
    for name in ("train.src", "train.tgt", "valid.src", "valid.tgt"):
        path = tmp_path / name
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(f"{x} </s> <pad> <s> {x}\n" for x in lines), encoding="utf-8")
    task = TranslationTask(RunConfig.load(config), tmp_path / "run", False, lambda _: None)
    t = task.tgt_tok
    specials = {t.pad_id, t.bos_id, t.eos_id}
    for data in (task.train, task.valid):
        assert all(not specials & set(row[:-1]) and row[-1] == t.eos_id for row in data.src)
        assert all(row[0] == t.bos_id and row[-1] == t.eos_id for row in data.tgt)
        assert all(not specials & set(row[1:-1]) for row in data.tgt)
    assert "</s> <pad> <s>" in t.decode([task.valid.tgt[0][1:-1]])[0]

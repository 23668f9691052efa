"""Each data field names one kind of file: a language model's text (`train_text`,
`valid_text`), a classifier's TSV (`train_tsv`, `valid_tsv`), a translation's line-aligned
pairs. Version 1's `data.train`/`data.valid`, and prepared datasets keyed so, keep their meaning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from aiayn.cli import main
from aiayn.commands.train import run_config
from aiayn.config import RunConfig
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config

FILES_OF = {
    "decoder_only": ("train_text", "valid_text"),
    "encoder_classifier": ("train_tsv", "valid_tsv"),
}
GOLDEN_RUN = Path(__file__).parent / "golden" / "run_before_40"


def write(path: Path, tables: dict) -> Path:
    path.write_text(tomli_w.dumps(tables), encoding="utf-8")
    return path


@pytest.mark.parametrize("arch", FILES_OF)
def test_version_1_train_and_valid_become_the_files_the_family_reads(tmp_path, capsys, arch):
    old = {"model": {"arch": arch}, "data": {"train": "a.txt", "valid": "b.txt", "train_src": ""}}
    path = write(tmp_path / "old.toml", old)
    cfg = RunConfig.load(path)
    train, valid = FILES_OF[arch]
    assert (getattr(cfg.data, train), getattr(cfg.data, valid)) == ("a.txt", "b.txt")
    other = next(files for name, files in FILES_OF.items() if name != arch)
    assert all(getattr(cfg.data, name) == "" for name in other)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines)
    assert f"data.train='a.txt' read as data.{train}='a.txt'" in lines[0]
    assert f"data.valid='b.txt' read as data.{valid}='b.txt'" in lines[1]
    saved = cfg.to_dict()["data"]
    assert {train, valid} <= set(saved) and not {"train", "valid", "train_src", *other} & set(saved)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg and not capsys.readouterr().err


def test_version_1_translation_drops_the_files_it_did_not_read(capsys):
    cfg = RunConfig.from_dict({"data": {"train": "", "valid": "", "train_src": "s"}})
    assert cfg.data.train_src == "s" and not capsys.readouterr().err  # empty: said nothing
    RunConfig.from_dict({"data": {"train": "t.txt"}})
    err = capsys.readouterr().err
    assert "data.train='t.txt' is not read by encoder_decoder: dropped" in err
    saved = RunConfig.from_dict({"version": 2}).to_dict()["data"]
    assert "train_src" in saved and not {"train_text", "train_tsv"} & set(saved)


@pytest.mark.parametrize(
    ("arch", "field", "own"),
    [
        ("decoder_only", "train_tsv", "data.train_text, data.valid_text"),
        ("decoder_only", "train_src", "data.train_text, data.valid_text"),
        ("encoder_classifier", "valid_text", "data.train_tsv, data.valid_tsv"),
        ("encoder_decoder", "train_text", "data.train_src, data.train_tgt"),
    ],
)
def test_a_version_2_file_naming_another_familys_file_is_refused(arch, field, own):
    data = {"version": 2, "model": {"arch": arch}, "data": {field: "x"}}
    refused = f"data.{field}='x' is not read by model.arch = '{arch}', whose files are {own}"
    with pytest.raises(ValueError, match=refused):
        RunConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"unknown key data.train"):
        RunConfig.from_dict({**data, "data": {"train": "x"}})


def test_a_run_directory_written_before_loads_with_the_same_files(capsys):
    cfg = RunConfig.load(GOLDEN_RUN / "config.toml")
    assert "data.train" not in capsys.readouterr().err  # its empty train/valid said nothing
    assert cfg.data.train_src.endswith("train.en.gz") and cfg.data.train_text == ""


def test_a_version_1_language_model_run_resumes_with_its_text(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    old = {"model": {"arch": "decoder_only"}, "data": {"train": "t.txt", "valid": ""}}
    write(run / "config.toml", old)
    (run / "trainer_state.pt").write_bytes(b"")

    class Args:
        resume, config, set = True, None, ["data.train=u.txt"]  # --set as version 1 names it

    assert run_config(Args, run).data.train_text == "u.txt"
    assert len(capsys.readouterr().err.splitlines()) == 2  # train and valid, once each


def old_style(manifest: dict, train: str, valid: str) -> dict:
    """The manifest as written before: the text or TSV sources keyed "train" and "valid"."""
    sources = manifest["sources"]
    keys = {train: "train", valid: "valid"}
    return {**manifest, "sources": {keys.get(k, k): v for k, v in sources.items()}}


@pytest.mark.parametrize(
    ("config", "source"),
    [(lm_config, "text.txt"), (classifier_config, "train.tsv")],
    ids=["language_model", "classification"],
)
def test_a_manifest_written_before_opens_and_checks_the_same_files(
    tmp_path, capsys, config, source
):
    path = config(tmp_path)
    data, steps = tmp_path / "data", ["--set", "train.max_steps=2", "--set", "train.eval_every=2"]
    assert main(["prepare", str(path), "--out", str(data)]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    train, valid = FILES_OF[RunConfig.load(path).model.arch]
    assert train in manifest["sources"] and "train" not in manifest["sources"]
    (data / "manifest.json").write_text(json.dumps(old_style(manifest, train, valid)))
    prepared = ["--set", f"data.prepared={data}", *steps]
    assert main(["train", str(path), "--out", str(tmp_path / "a"), *prepared]) == 0
    with open(tmp_path / source, "a", encoding="utf-8") as f:
        f.write("more\n")  # the file the old key named, changed since
    capsys.readouterr()
    assert main(["train", str(path), "--out", str(tmp_path / "b"), *prepared]) == 2
    assert "changed since" in capsys.readouterr().err

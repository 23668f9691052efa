"""`aiayn prepare` and `data.prepared`: the same training as from text, and every stale or
damaged dataset refused in one line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aiayn.cli import main
from aiayn.prepare import build, dataset
from aiayn.prepare.dataset import file_digest as digest
from tests.cli_helpers import write_config, write_corpus

TRAIN = ["--set", "train.max_steps=12", "--set", "train.eval_every=6"]


def losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path]:
    """(config, dataset) of the toy corpus."""
    folder = tmp_path_factory.mktemp("prepared")
    config = write_config(folder)
    assert main(["prepare", str(config), "--out", str(folder / "data")]) == 0
    return config, folder / "data"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn "), err
    return err[-1]


# workers: the prepared run's batches collated by DataLoader workers (as on CUDA)
@pytest.mark.parametrize("lowercase, workers", [(False, 0), (True, 2)])
def test_prepared_and_in_memory_training_are_bit_identical(tmp_path, lowercase, workers):
    config = write_config(tmp_path)
    sets = [*TRAIN, "--set", f"data.lowercase={str(lowercase).lower()}"]
    assert main(["prepare", str(config), "--out", str(tmp_path / "data"), *sets]) == 0
    assert main(["train", str(config), "--out", str(tmp_path / "text"), *sets]) == 0
    data = ["--set", f"data.prepared={tmp_path / 'data'}", "--set", "data.train_src="]
    data += ["--set", f"train.loader_workers={workers}"]
    assert main(["train", str(config), "--out", str(tmp_path / "mapped"), *sets, *data]) == 0
    assert losses(tmp_path / "text") == losses(tmp_path / "mapped")
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("text", "mapped"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "text" / "tokenizer.json").read_text() == (
        tmp_path / "mapped" / "tokenizer.json"
    ).read_text()
    assert (tmp_path / "mapped" / "recaser.json").exists() == lowercase


def test_the_arrays_memory_map_and_the_manifest_counts_them(prepared):
    _, data = prepared
    manifest = json.loads((data / "manifest.json").read_text())
    ids = np.load(data / "train.src.npy", mmap_mode="r")
    offsets = np.load(data / "train.src.idx.npy", mmap_mode="r")
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    assert manifest["splits"]["train"]["pairs"] == len(offsets) - 1 == 240
    assert manifest["splits"]["train"]["src_tokens"] == len(ids) == offsets[-1]
    assert set(manifest["sources"]) == {"train_src", "train_tgt", "valid_src", "valid_tgt"}


def edit_manifest(data: Path, change) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    change(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))


def copy_dataset(data: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(data, tmp_path / "data"))


def train_on(config: Path, data: Path, out: Path, *extra: str) -> int:
    sets = ["--set", f"data.prepared={data}", *TRAIN, *extra]
    return main(["train", str(config), "--out", str(out), *sets])


def test_a_source_changed_since_prepare_is_refused(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["prepare", str(config), "--out", str(tmp_path / "data")]) == 0
    with open(tmp_path / "train.tgt", "a") as f:
        f.write("ein hund\n")
    assert train_on(config, tmp_path / "data", tmp_path / "run") == 2
    assert "train.tgt: changed since" in error_line(capsys)


def test_a_same_size_edit_is_caught_by_its_hash_and_an_untouched_file_is_not_hashed(
    tmp_path, capsys, monkeypatch
):
    config = write_config(tmp_path)
    assert main(["prepare", str(config), "--out", str(tmp_path / "data")]) == 0
    hashed = []
    monkeypatch.setattr(dataset, "file_digest", lambda p: hashed.append(p.name) or digest(p))
    assert train_on(config, tmp_path / "data", tmp_path / "run") == 0
    assert hashed == []  # sizes and modification times as recorded
    source = tmp_path / "train.tgt"
    data = source.read_bytes()
    source.write_bytes((b"y" if data[:1] == b"x" else b"x") + data[1:])  # same size
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert train_on(config, tmp_path / "data", tmp_path / "run2") == 2
    assert "train.tgt: changed since" in error_line(capsys)
    assert hashed == ["train.tgt"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.json").unlink(), "not a finished prepared dataset"),
        (
            lambda d: (d / "manifest.json").write_text('{"format": 99}'),
            "format 99, expected 1",
        ),
        (
            lambda d: (d / "train.tgt.npy").write_bytes((d / "train.tgt.npy").read_bytes()[:-9]),
            "train.tgt.npy: not a readable .npy array",
        ),
        (lambda d: (d / "train.src.idx.npy").unlink(), "train.src.idx.npy: missing"),
        (
            lambda d: edit_manifest(d, lambda m: m["sources"]["train_src"].update(size="big")),
            "source 'train_src' is not a data file's path, size and sha256",
        ),
        (
            lambda d: edit_manifest(d, lambda m: m["sources"].update(secret={"path": "/etc"})),
            "source 'secret' is not a data file's path, size and sha256",
        ),
        (
            lambda d: (d / "manifest.json").write_text(" " * (2 << 20)),
            "larger than 1,048,576 bytes; refused",
        ),
    ],
)
def test_a_damaged_dataset_is_one_line(prepared, tmp_path, capsys, damage, message):
    config, data = prepared
    data = copy_dataset(data, tmp_path)
    damage(data)
    assert train_on(config, data, tmp_path / "run") == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_other_token_settings_or_another_tokenizer_are_refused(prepared, tmp_path, capsys):
    config, data = prepared
    assert train_on(config, data, tmp_path / "a", "--set", "data.vocab_size=90") == 2
    assert "prepared with data.vocab_size=80" in error_line(capsys)
    assert train_on(config, data, tmp_path / "run") == 0
    other = copy_dataset(data, tmp_path)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zzz"] = tok["model"]["vocab"].pop(next(iter(tok["model"]["vocab"])))
    (other / "tokenizer.json").write_text(json.dumps(tok))
    resume = ["train", "--out", str(tmp_path / "run"), "--resume"]
    sets = ["--set", f"data.prepared={other}", "--set", "train.max_steps=14"]
    assert main([*resume, *sets]) == 2
    assert "its tokenizer differs from the one" in error_line(capsys)


def test_an_interrupted_prepare_then_a_new_one_gives_the_same_files(tmp_path, monkeypatch):
    config = write_config(tmp_path)
    assert main(["prepare", str(config), "--out", str(tmp_path / "whole")]) == 0
    real = build.write_split

    def dies_in_valid(out, split, *args):
        if split == "valid":
            raise KeyboardInterrupt  # killed half-way: train written, valid and manifest not
        return real(out, split, *args)

    monkeypatch.setattr(build, "write_split", dies_in_valid)
    assert main(["prepare", str(config), "--out", str(tmp_path / "cut")]) == 130
    assert not (tmp_path / "cut" / "manifest.json").exists()
    monkeypatch.setattr(build, "write_split", real)
    assert main(["prepare", str(config), "--out", str(tmp_path / "cut")]) == 0
    same_files(tmp_path / "whole", tmp_path / "cut")


def test_prepare_refuses_mismatched_files(tmp_path, capsys):
    config = write_config(tmp_path)
    (tmp_path / "train.src").write_text("one line\n")
    assert main(["prepare", str(config), "--out", str(tmp_path / "d")]) == 2
    assert "parallel files differ in length" in error_line(capsys)
    assert not (tmp_path / "d" / "manifest.json").exists()


@pytest.mark.parametrize(
    "tokenizer, valid, workers", [("char", False, 2), ("bpe", False, 0), ("bpe", True, 0)]
)
def test_a_language_model_trains_alike_from_its_prepared_token_stream(
    tmp_path, tokenizer, valid, workers
):
    from tests.tasks.test_language_model import lm_config

    config = lm_config(tmp_path, tokenizer, max_steps=20, eval_every=10)
    sets = ["--set", "data.vocab_size=60", "--set", "data.valid_fraction=0.17"]
    if valid:  # a text with \r and other line breaks str.splitlines would also cut at
        (tmp_path / "valid.txt").write_text("Hark,\r who goes\u2028there?\nNone.\n")
        sets += ["--set", f"data.valid_text={tmp_path / 'valid.txt'}"]
    assert main(["prepare", str(config), "--out", str(tmp_path / "data"), *sets]) == 0
    assert main(["train", str(config), "--out", str(tmp_path / "text"), *sets]) == 0
    data = ["--set", f"data.prepared={tmp_path / 'data'}"]
    data += ["--set", f"train.loader_workers={workers}"]
    assert main(["train", str(config), "--out", str(tmp_path / "mapped"), *sets, *data]) == 0
    assert losses(tmp_path / "text") == losses(tmp_path / "mapped")
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("text", "mapped"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ids = np.load(tmp_path / "data" / "train.ids.npy", mmap_mode="r")
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16


def test_a_translation_dataset_is_no_language_model_dataset(prepared, tmp_path, capsys):
    from tests.tasks.test_language_model import lm_config

    _, data = prepared
    config = lm_config(tmp_path)
    assert (
        main(["train", str(config), "--out", str(tmp_path / "r"), "--set", f"data.prepared={data}"])
        == 2
    )
    assert "a translation dataset; this run needs language_model" in error_line(capsys)


def test_a_classifier_trains_alike_from_its_prepared_texts(tmp_path):
    from tests.tasks.test_classification import classifier_config

    config = classifier_config(tmp_path)
    sets = ["--set", "train.max_steps=20", "--set", "train.eval_every=10"]
    assert main(["prepare", str(config), "--out", str(tmp_path / "data"), *sets]) == 0
    assert main(["train", str(config), "--out", str(tmp_path / "text"), *sets]) == 0
    data = ["--set", f"data.prepared={tmp_path / 'data'}", "--set", "data.train_tsv="]
    assert main(["train", str(config), "--out", str(tmp_path / "mapped"), *sets, *data]) == 0
    assert losses(tmp_path / "text") == losses(tmp_path / "mapped")
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("text", "mapped"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "mapped" / "labels.txt").read_text() == "0\n1\n"
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["labels"] == ["0", "1"] and manifest["splits"]["train"]["texts"] == 400


def test_a_manifest_naming_a_device_as_its_source_is_not_read(prepared, tmp_path):
    config, data = prepared
    data = copy_dataset(data, tmp_path)
    endless = {"path": "/dev/zero", "size": 0, "sha256": "0" * 64}
    edit_manifest(data, lambda m: m["sources"].update(train_src=endless))
    assert train_on(config, data, tmp_path / "run") == 0  # /dev/zero is not hashed (forever)


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name != "manifest.json":  # it names its own folder's sources: the same here
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "manifest.json").read_text()) == json.loads(
        (b / "manifest.json").read_text()
    )


def test_a_sigkilled_prepare_then_a_new_one_gives_the_same_files(tmp_path):
    config = write_config(tmp_path)
    write_corpus(tmp_path, n=60_000)  # long enough to be killed while it writes the arrays
    assert main(["prepare", str(config), "--out", str(tmp_path / "whole")]) == 0
    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "aiayn", "prepare", str(config), "--out", str(cut)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (cut.is_dir() and any(p.name.endswith(".tmp") for p in cut.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "prepare ended unkilled"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "manifest.json").exists()
    assert train_on(config, cut, tmp_path / "run") == 2  # not taken for a dataset
    assert main(["prepare", str(config), "--out", str(cut)]) == 0
    same_files(tmp_path / "whole", cut)


def test_an_id_beyond_the_vocabulary_is_refused_when_read(prepared, tmp_path, capsys):
    config, data = prepared
    data = copy_dataset(data, tmp_path)
    ids = np.load(data / "train.tgt.npy")
    ids[:] = 65_000
    np.save(data / "train.tgt.npy", ids)
    assert train_on(config, data, tmp_path / "run") == 2
    assert "train.tgt.npy: id 65,000 beyond the vocabulary of 80" in error_line(capsys)


def test_prepare_refuses_a_folder_of_other_files_and_changes_nothing(tiny_run, tmp_path, capsys):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["prepare", str(write_config(tmp_path)), "--out", str(run)]) == 2
    line = error_line(capsys)
    assert f"{run} already holds files" in line and "choose a new or empty --out" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before

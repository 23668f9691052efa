"""The input rule, walked over every command: each file a command reads is a regular file,
inside its folder, read with a size bound. Each command is fed, in each file it reads, a FIFO
(which would hang an open), a link out of the folder (which would read elsewhere) and, where
the user names the file, a device (/dev/zero would be read without end): each answer is one
line on stderr and exit 2, within seconds."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from aiayn.cli import main
from aiayn.run.files import pick_weights
from tests.cli_helpers import write_config

WATCHDOG_S = 10  # a tiny run loads in about a second; a FIFO would wait forever


class Hung(BaseException):
    """Raised by the watchdog: a BaseException, so that no handler of aiayn's catches it."""


def one_line_refusal(argv: list[str]) -> str:
    """Run `aiayn ARGV` in this process under a watchdog; assert exit 2 and one line."""

    def hung(*_: object) -> None:
        raise Hung(f"aiayn {' '.join(argv)} still running after {WATCHDOG_S} s")

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("aiayn ")]
    assert code == 2, err.getvalue()
    assert len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    return lines[0]


def fifo(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    os.mkfifo(path)


def link_out(path: Path) -> None:
    """`path` replaced by a link to a copy of it outside its folder."""
    outside = path.parent.parent / f"outside-{path.name}"
    if path.is_dir():
        shutil.copytree(path, outside)
        shutil.rmtree(path)
    else:
        shutil.copyfile(path, outside) if path.exists() else outside.write_text("{}")
        path.unlink(missing_ok=True)
    path.symlink_to(outside.resolve())


PLANT: dict[str, Callable[[Path], None]] = {"fifo": fifo, "link": link_out}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run) -> dict[str, Path]:
    """One run of each kind, and the folders other commands read, made once."""
    from tests.tasks.test_classification import classifier_config
    from tests.tasks.test_language_model import lm_config

    folder = tmp_path_factory.mktemp("inputs")
    quiet = contextlib.redirect_stderr(io.StringIO())
    with quiet, contextlib.redirect_stdout(io.StringIO()):
        ct2 = Path(shutil.copytree(tiny_run, folder / "ct2run"))
        assert main(["export-ct2", str(ct2)]) == 0
        assert main(["quantize", str(tiny_run), "--out", str(folder / "int8")]) == 0
        (folder / "lm").mkdir()
        lm = lm_config(folder / "lm", max_steps=4, eval_every=4)
        assert main(["train", str(lm), "--out", str(folder / "lmrun")]) == 0
        clf = classifier_config(folder)
        data = tomllib.loads(clf.read_text())
        data["train"] |= {"max_steps": 4, "eval_every": 4}
        clf.write_text(tomli_w.dumps(data))
        assert main(["train", str(clf), "--out", str(folder / "clfrun")]) == 0
        hf = hf_folder(folder / "hf")
        assert main(["import-hf", str(hf), "--out", str(folder / "imported")]) == 0
    return {
        "run": tiny_run,
        "ct2": ct2,
        "int8": folder / "int8",
        "lm": folder / "lmrun",
        "clf": folder / "clfrun",
        "hf": hf,
        "imported": folder / "imported",
    }


def hf_folder(folder: Path) -> Path:
    import transformers

    from tests.interop.conftest import VOCAB, char_tokenizer_json, save

    # GPT-2's special ids are its <|endoftext|>: id 0 here (the default, 50256, is out of range)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    save(transformers.GPT2LMHeadModel(cfg).eval(), folder)
    char_tokenizer_json(folder / "tokenizer.json")
    return folder


def copy_of(runs: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs[kind], tmp_path / "box" / kind, symlinks=True))


# (command line with {dir} for the copied folder, the folder's kind, the file to plant)
IN_FOLDERS = {
    "translate config.toml": (["translate", "--model", "{dir}"], "run", "config.toml"),
    "translate tokenizer": (["translate", "--model", "{dir}"], "run", "tokenizer.json"),
    "translate weights": (["translate", "--model", "{dir}"], "run", "WEIGHTS"),
    "translate recaser": (["translate", "--model", "{dir}"], "run", "recaser.json"),
    "translate int8": (["translate", "--model", "{dir}", "--device", "cpu"], "int8", "WEIGHTS"),
    "evaluate tokenizer": (
        ["evaluate", "--model", "{dir}", "--src", "{dir}/../../s", "--ref", "{dir}/../../s"],
        "run",
        "tokenizer.json",
    ),
    "resume state": (["train", "--out", "{dir}", "--resume"], "run", "trainer_state.pt"),
    "resume config": (["train", "--out", "{dir}", "--resume"], "run", "config.toml"),
    "plot-metrics": (["plot-metrics", "{dir}", "--out", "{dir}/../m.png"], "run", "metrics.jsonl"),
    "plot-attention": (
        ["plot-attention", "--model", "{dir}", "--src", "a"],
        "run",
        "tokenizer.json",
    ),
    "explain": (["explain", "--model", "{dir}", "--src", "a dog"], "run", "tokenizer.json"),
    "serve": (["serve", "--model", "{dir}", "--port", "0"], "run", "tokenizer.json"),
    "export-hf": (["export-hf", "{dir}", "--out", "{dir}/../x"], "imported", "tokenizer.json"),
    "export-ct2": (["export-ct2", "{dir}", "--out", "{dir}/../x"], "run", "WEIGHTS"),
    "quantize": (["quantize", "{dir}", "--out", "{dir}/../x"], "run", "recaser.json"),
    "ct2 model.bin": (["translate", "--model", "{dir}", "--engine", "ct2"], "ct2", "ct2/model.bin"),
    "ct2 config": (["translate", "--model", "{dir}", "--engine", "ct2"], "ct2", "ct2/config.json"),
    "ct2 vocabulary": (
        ["translate", "--model", "{dir}", "--engine", "ct2"],
        "ct2",
        "ct2/shared_vocabulary.json",
    ),
    "ct2 folder": (["translate", "--model", "{dir}", "--engine", "ct2"], "ct2", "ct2"),
    "classify labels": (["classify", "--model", "{dir}"], "clf", "labels.txt"),
    "evaluate labels": (
        ["evaluate", "--model", "{dir}", "--src", "{dir}/../../s.tsv"],
        "clf",
        "labels.txt",
    ),
    "generate tokenizer": (["generate", "--model", "{dir}"], "lm", "tokenizer.json"),
    "generate weights": (["generate", "--model", "{dir}"], "lm", "WEIGHTS"),
    "import-hf config": (["import-hf", "{dir}", "--out", "{dir}/../x"], "hf", "config.json"),
    "import-hf weights": (["import-hf", "{dir}", "--out", "{dir}/../x"], "hf", "model.safetensors"),
    "import-hf tokenizer": (["import-hf", "{dir}", "--out", "{dir}/../x"], "hf", "tokenizer.json"),
}


# quantize_run copies the run's files with a read of its own, which a FIFO hangs: the
# writers' branch of issue 39 owns it (remove this mark once it reads through aiayn.safeio)
@pytest.mark.parametrize("case, how", [(c, how) for c in IN_FOLDERS for how in PLANT])
def test_every_file_in_a_folder_is_a_regular_file_inside_it(runs, tmp_path, case, how):
    argv, kind, name = IN_FOLDERS[case]
    folder = copy_of(runs, kind, tmp_path)
    (tmp_path / "s").write_text("a dog runs\n")
    (tmp_path / "s.tsv").write_text("text\tlabel\ngreat film\t1\n")
    target = pick_weights(folder) if name == "WEIGHTS" else folder / name
    PLANT[how](target)
    line = one_line_refusal([a.format(dir=folder) for a in argv])
    assert target.name in line or str(folder) in line, line


def study(folder: Path) -> Path:
    config = tomllib.loads(write_config(folder).read_text())
    config["ablate"] = {"seeds": [1], "out": str(folder / "runs"), "report": str(folder / "r")}
    (folder / "study.toml").write_text(tomli_w.dumps(config))
    return folder / "study.toml"


# (command line, the file the user names, in tmp_path); `{file}` is what is planted
NAMED = {
    "params": ["params", "{file}"],
    "train": ["train", "{file}", "--out", "{tmp}/o"],
    "prepare": ["prepare", "{file}", "--out", "{tmp}/o"],
    "demo": ["demo", "--config", "{file}", "--out", "{tmp}/o"],
    "ablate": ["ablate", "{file}"],
    "explain --config": ["explain", "--config", "{file}", "--src", "a"],
    "translate --input": ["translate", "--model", "{run}", "--input", "{file}"],
    "classify --input": ["classify", "--model", "{clf}", "--input", "{file}"],
    "evaluate --src": ["evaluate", "--model", "{run}", "--src", "{file}", "--ref", "{file}"],
    "import-hf --tokenizer": ["import-hf", "{hf}", "--out", "{tmp}/o", "--tokenizer", "{file}"],
}


@pytest.mark.parametrize("how", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("case", NAMED)
def test_every_file_a_user_names_is_a_regular_file(runs, tmp_path, case, how):
    if how == "fifo":
        fifo(path := tmp_path / "named")
    else:
        path = Path(how)
    argv = [
        a.format(file=path, tmp=tmp_path, run=runs["run"], clf=runs["clf"], hf=runs["hf"])
        for a in NAMED[case]
    ]
    assert str(path) in one_line_refusal(argv)


@pytest.mark.parametrize("how", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("command", ["train", "prepare"])
def test_training_data_is_a_regular_file(tmp_path, command, how):
    path = Path(how) if how != "fifo" else tmp_path / "named"
    if how == "fifo":
        fifo(path)
    config = write_config(tmp_path)
    data = tomllib.loads(config.read_text())
    data["data"]["train_src"] = str(path)
    config.write_text(tomli_w.dumps(data))
    line = one_line_refusal([command, str(config), "--out", str(tmp_path / "o")])
    assert str(path) in line


@pytest.mark.parametrize(
    "plant",
    [fifo, link_out, lambda p: p.write_text('{"name": "base", "steps": "many"}')],
    ids=["fifo", "link", "wrong shape"],
)
def test_an_ablation_result_is_read_back_by_the_rule(tmp_path, plant):
    config = study(tmp_path)
    (tmp_path / "runs" / "base-seed1").mkdir(parents=True)
    plant(tmp_path / "runs" / "base-seed1" / "result.json")
    assert "result.json" in one_line_refusal(["ablate", str(config)])


def test_an_hf_config_linked_out_is_not_followed(runs, tmp_path):
    folder = copy_of(runs, "hf", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    link_out(folder / "config.json")
    assert json.loads((folder / "config.json").read_text()) == config  # readable, but outside
    line = one_line_refusal(["import-hf", str(folder), "--out", str(tmp_path / "o")])
    assert "a link out of its directory" in line

"""Bad input to the CLI: one clear line on stderr, exit code 2, and no run directory harmed."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from aiayn.cli import main
from tests.cli_helpers import write_config


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("existing")
    config = write_config(folder, max_steps=4, eval_every=2, bleu=False)
    assert main(["train", str(config), "--out", str(folder / "run")]) == 0
    return folder / "run"


def break_train_src(how: str, folder: Path) -> list[str]:
    config = write_config(folder)
    src = folder / "train.src"
    if how == "missing file":
        src.unlink()
    elif how == "empty file":
        src.write_bytes(b"")
    elif how == "mismatched line counts":
        src.write_text("one line only\n")
    elif how == "non-UTF-8 line":
        src.write_bytes(src.read_bytes() + b"caf\xe9 au lait\n")
    return [str(config)]


CASES = {
    "missing file": (break_train_src, r"train.src: no such file"),
    "empty file": (break_train_src, "train.src: file is empty"),
    "mismatched line counts": (break_train_src, "has 1 lines"),
    "non-UTF-8 line": (break_train_src, "train.src: line 241 is not valid UTF-8"),
    "unknown config key": (
        lambda how, f: [str(write_config(f)), "--set", "train.learning_rate=1"],
        "unknown key train.learning_rate; valid keys: seed, max_steps",
    ),
    "wrong type": (
        lambda how, f: [str(write_config(f)), "--set", "train.max_steps=many"],
        "train.max_steps='many' has the wrong type; expected int",
    ),
    "bad value": (
        lambda how, f: [str(write_config(f)), "--set", "model.dropout=1.5"],
        "model.dropout=1.5 is invalid",
    ),
    "missing config": (lambda how, f: [str(f / "absent.toml")], "absent.toml' does not exist"),
}


@pytest.mark.parametrize("how", list(CASES))
def test_bad_training_input_is_one_line_exit_2_and_the_run_survives(
    how, tmp_path, capsys, existing_run
):
    make, message = CASES[how]
    before = snapshot(existing_run)
    args = make(how, tmp_path)
    for out in (tmp_path / "fresh", existing_run):
        assert main(["train", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aiayn train: error:") and err.count("\n") == 1, err
        # into the existing run, data errors come second to "already holds files"
        assert message in err or (out == existing_run and "pass --resume" in err), err
    assert not (tmp_path / "fresh").exists()
    assert snapshot(existing_run) == before


def test_training_into_a_used_directory_needs_resume(existing_run, tmp_path, capsys):
    before = snapshot(existing_run)
    assert main(["train", str(write_config(tmp_path)), "--out", str(existing_run)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert snapshot(existing_run) == before


def test_bad_override_on_resume_leaves_the_run_intact(existing_run, capsys):
    before = snapshot(existing_run)
    assert main(["train", "--out", str(existing_run), "--resume", "--set", "train.nope=1"]) == 2
    assert "unknown key train.nope" in capsys.readouterr().err
    assert snapshot(existing_run) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["translate", "--model", "{tmp}/none"], "not a run directory"),
        (["translate", "--model", "{run}", "--input", "{tmp}/none.txt"], "none.txt: no such file"),
        (["evaluate", "--model", "{run}", "--src", "{tmp}/a", "--ref", "{tmp}/b"], "no such file"),
        (["translate", "--model", "{run}", "--weights", "newest"], "--weights 'newest' is unknown"),
        (
            ["evaluate", "--model", "{run}", "--model", "{run}", "--src", "{tmp}/a"],
            "several --model (an ensemble) are for classifiers, not encoder_decoder models",
        ),
        (
            ["translate", "--model", "{run}", "--cuda-graph", "--device", "cpu"],
            "--cuda-graph needs a CUDA device; --device gave cpu",
        ),
        (
            ["translate", "--model", "{run}", "--cuda-graph", "--int8"],
            "--int8 decodes on a CPU and --cuda-graph on CUDA; choose one",
        ),
        (
            ["translate", "--model", "{run}", "--cuda-graph", "--engine", "ct2"],
            "--cuda-graph is aiayn's own decoding; ct2 runs its own",
        ),
    ],
)
def test_decoding_commands_report_bad_paths(args, message, existing_run, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, run=existing_run) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_no_traceback_from_the_real_process(tmp_path):
    (tmp_path / "bad.toml").write_text("[model]\nd_model = 'big'\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiayn",
            "train",
            str(tmp_path / "bad.toml"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "model.d_model='big'" in run.stderr

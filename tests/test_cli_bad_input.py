"""Careless or hostile input to every command: one line on stderr naming what was wrong, exit
2, never a traceback; --debug shows the traceback for the people who fix aiayn."""

import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aiayn.cli import main
from aiayn.train.checkpoint import save_state
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("classifier")
    out = folder / "run"
    assert main(["train", str(classifier_config(folder)), "--out", str(out)]) == 0
    return out


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn ") and "Traceback" not in "\n".join(err), err
    return err[-1]


def feed_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


@pytest.mark.parametrize("beam", ["0", "-1", "1000000000000", "9" * 27])
def test_a_beam_outside_its_range_is_refused(run, capsys, beam):
    # a huge beam allocated beam x vocabulary scores (or overflowed a C long): a traceback
    assert main(["translate", "--model", str(run), "--beam", beam]) == 2
    assert f"--beam {beam} must be in [1, 64]" in error_line(capsys)


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_an_alpha_that_overflows_the_length_penalty_is_refused(run, tmp_path, capsys, command):
    (tmp_path / "s.txt").write_text("a dog runs\n")
    pair = ["--src", str(tmp_path / "s.txt"), "--ref", str(tmp_path / "s.txt")]
    args = [command, "--model", str(run), "--alpha", "1e300"]
    assert main([*args, *(pair if command == "evaluate" else [])]) == 2
    assert "--alpha 1e+300: the length penalty must be in [0, 10]" in error_line(capsys)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("decode.beam", "1000000000000"),
        ("decode.alpha", "1e308"),
        ("decode.length_norm", '"gnmt2"'),
        ("train.seed", "9" * 23),
    ],
)
def test_decoding_settings_a_run_could_not_use_are_refused_at_load(tmp_path, capsys, key, value):
    # saved in a run, they failed every later translate and every default server request
    args = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", f"{key}={value}"]) == 2
    assert f"{key}=" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_sampling_settings_are_checked_before_anything_is_printed(tmp_path, capsys):
    lm = tmp_path / "lm"
    assert (
        main(["train", str(lm_config(tmp_path, max_steps=2, eval_every=2)), "--out", str(lm)]) == 0
    )
    capsys.readouterr()
    for flags in (["--stop", ""], ["--temperature", "1e300"], ["--cuda-graph", "--device", "cpu"]):
        assert main(["generate", "--model", str(lm), "--prompt", "hi", *flags]) == 2
        assert capsys.readouterr().out == ""  # the prompt was echoed, then the error came
    assert main(["generate", "--model", str(lm), "--cuda-graph", "--device", "cpu"]) == 2
    assert "--cuda-graph needs a CUDA device; --device gave cpu" in error_line(capsys)


def test_non_utf8_stdin_names_the_line(run, classifier, capsys, monkeypatch):
    for command, model in (("translate", run), ("classify", classifier)):
        feed_stdin(monkeypatch, b"a dog runs\ncaf\xe9\n")
        assert main([command, "--model", str(model)]) == 2
        assert "stdin: line 2 is not valid UTF-8" in error_line(capsys)


def test_input_files_plain_or_gz_name_the_bad_line(run, tmp_path, capsys):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"a dog\n\xff\n")
    assert main(["translate", "--model", str(run), "--input", str(bad)]) == 2
    assert f"{bad}: line 2 is not valid UTF-8" in error_line(capsys)
    good = tmp_path / "in.txt.gz"
    good.write_bytes(gzip.compress(b"a dog runs\nthe cat\n"))
    assert main(["translate", "--model", str(run), "--input", str(good), "--beam", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "bogus"])
def test_a_device_this_machine_lacks_is_refused(tmp_path, capsys, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", f"train.device={device}"]) == 2
    assert f"train.device={device!r}" in error_line(capsys)


def test_a_tokenizer_with_more_ids_than_the_model_is_refused(run, capsys):
    from tokenizers import Tokenizer

    tok = json.loads((run / "tokenizer.json").read_text())
    tok["model"]["vocab"].update({f"extra{i}": 1000 + i for i in range(50)})
    (run / "tokenizer.json").write_text(json.dumps(tok))
    assert Tokenizer.from_file(str(run / "tokenizer.json")).get_vocab_size() > 80
    assert main(["translate", "--model", str(run)]) == 2
    assert "the model's vocabulary holds" in error_line(capsys)


def test_labels_that_do_not_match_the_classes_are_refused(classifier, tmp_path, capsys):
    copy = Path(shutil.copytree(classifier, tmp_path / "c"))
    (copy / "labels.txt").write_text("0\n1\n2\n")
    feed_stdin(pytest.MonkeyPatch(), b"great film\n")
    assert main(["classify", "--model", str(copy)]) == 2
    assert "labels.txt: 3 lines" in error_line(capsys)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"words": [], "pairs": {}, "capital_first": true, "capital_unseen": false}', "'words'"),
        ('{"words": {}, "pairs": {}, "capital_first": "yes", "capital_unseen": false}', "true or"),
        ("[" * 100_000 + "]" * 100_000, "not a readable recaser file"),
    ],
)
def test_a_bad_recaser_is_refused(run, capsys, content, message):
    (run / "recaser.json").write_text(content)
    assert main(["translate", "--model", str(run)]) == 2
    line = error_line(capsys)
    assert "recaser.json" in line and message in line


def test_deeply_nested_toml_is_one_line(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("x = " + "[" * 50_000 + "]" * 50_000)
    assert main(["params", str(tmp_path / "c.toml")]) == 2
    assert "nests too deeply" in error_line(capsys)


@pytest.mark.parametrize(
    "table, message",
    [
        ("d_model = 1_000_000_000\nn_heads = 8", "parameters"),
        ("n_layers = 100_000_000", "layers"),
        ("d_model = 32\nn_heads = 2\nhead_dim = 100_000_000_000", "parameters"),
    ],
)
def test_absurd_model_sizes_are_refused_before_building(run, tmp_path, capsys, table, message):
    (tmp_path / "c.toml").write_text(f"[model]\n{table}\n")
    assert main(["params", str(tmp_path / "c.toml")]) == 2
    assert message in error_line(capsys)
    config = (run / "config.toml").read_text().replace("n_layers = 1\n", "n_layers = 100000000\n")
    (run / "config.toml").write_text(config)
    assert main(["translate", "--model", str(run)]) == 2
    assert "more than this machine's" in error_line(capsys)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.lr", "inf", "expected a finite number"),
        ("train.eps", "-1e-9", "train.eps=-1e-09 is invalid; expected positive"),
        ("train.beta1", "1.0", "train.beta1=1.0 is invalid; expected in [0, 1)"),
        ("train.beta2", "-0.1", "in [0, 1)"),
    ],
)
def test_optimizer_values_are_checked_at_load(tmp_path, capsys, key, value, expected):
    args = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", f"{key}={value}"]) == 2
    assert expected in error_line(capsys)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--temperature", "inf", "--temperature inf must be 0 (greedy) or in [0.001, 100]"),
        # overflows float32 logits to NaN inside the model: refused before it is loaded
        ("--temperature", "1e-300", "--temperature 1e-300 must be 0 (greedy) or in [0.001,"),
        ("--seed", "-1", "--seed -1"),
    ],
)
def test_sampling_options_name_themselves(tmp_path, capsys, flag, value, message):
    assert main(["generate", "--model", str(tmp_path), flag, value]) == 2
    assert message in error_line(capsys)


def test_a_malformed_data_only_state_and_a_refused_pickle_are_one_line(run, capsys):
    save_state({"step": 3}, run / "trainer_state.pt")
    assert main(["train", "--out", str(run), "--resume", "--set", "train.max_steps=40"]) == 2
    assert "trainer_state.pt: field 'bad_evals' is missing" in error_line(capsys)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"step": Exploit()}, run / "trainer_state.pt")
    assert main(["train", "--out", str(run), "--resume", "--set", "train.max_steps=40"]) == 2
    line = error_line(capsys)
    assert "refused or unreadable trainer state" in line and "weights_only=False" not in line


@pytest.mark.parametrize("dtype", [torch.int64, "nan"])
def test_weights_of_a_wrong_dtype_or_nan_are_refused(run, capsys, dtype):
    for name in ("model", "best", "average"):
        path = run / f"{name}.safetensors"
        if path.exists():
            t = load_file(str(path))
            key = next(iter(t))
            t[key] = t[key].long() if dtype is torch.int64 else t[key] * float("nan")
            save_file(t, str(path))
    assert main(["translate", "--model", str(run)]) == 2
    assert ("is torch.int64" if dtype is torch.int64 else "non-finite values") in error_line(capsys)


def test_an_unset_training_file_is_named(tmp_path, capsys):
    args = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", "data.train_src="]) == 2
    assert "data.train_src is unset" in error_line(capsys)


def test_too_many_bad_steps_say_whether_a_checkpoint_exists(tmp_path, capsys):
    args = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", "train.lr=1e30", "--set", "train.max_bad_steps=2"]) == 2
    line = error_line(capsys)
    assert "no checkpoint had been saved yet" in line and "is kept" not in line


def test_a_closed_pipe_ends_quietly(run, tmp_path):
    lines = tmp_path / "many.txt"
    lines.write_text("a dog runs\n" * 300)
    cmd = f"{sys.executable} -m aiayn translate --model {run} --beam 1 --input {lines} | head -1"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr


def test_debug_shows_the_traceback_of_a_one_line_error(tmp_path):
    (tmp_path / "bad.toml").write_text("[model]\nd_model = 'big'\n")
    for args, env in (
        (["--debug", "params"], {}),
        (["params"], {"AIAYN_DEBUG": "1"}),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "aiayn", *args, str(tmp_path / "bad.toml")],
            capture_output=True,
            text=True,
            env={**__import__("os").environ, **env},
        )
        assert done.returncode == 2
        assert "Traceback" in done.stderr and done.stderr.strip().endswith("expected int")

"""Bad input of issue 39 that used to end in a traceback or a silent wrong answer: text on the
command line that is not UTF-8, damaged CTranslate2 folders, crafted trainer states, ablation
results of the wrong shape, int8 scales no quantizer writes. Each is one line naming the file
or option, exit 2."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aiayn.cli import main
from tests.cli_helpers import write_config


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn ") and "Traceback" not in "\n".join(err), err
    return err[-1]


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


BAD = "caf\udce9"  # how Python hands over the Latin-1 byte 0xE9 of a command line


@pytest.mark.parametrize(
    "argv, option",
    [
        (["generate", "--model", "{run}", "--prompt", BAD], "--prompt"),
        (["generate", "--model", "{run}", "--stop", BAD], "--stop"),
        (["explain", "--model", "{run}", "--src", BAD], "--src"),
        (["explain", "--model", "{run}", "--src", "a", "--tgt", BAD], "--tgt"),
        (["plot-attention", "--model", "{run}", "--src", BAD], "--src"),
        (["translate", "--model", "{run}", "--input", BAD], "--input"),
        (["train", "--out", "{run}", "--resume", "--set", BAD], "--set"),
        (["params", BAD], "config"),
    ],
)
def test_text_arguments_that_are_not_utf8_name_their_option(tiny_run, capsys, argv, option):
    assert main([a.format(run=tiny_run) for a in argv]) == 2
    line = error_line(capsys)
    assert f"error: {option}: not valid UTF-8 text (character 3 is '\\udce9'" in line


def test_invalid_utf8_bytes_in_argv_are_one_line(tiny_run):
    argv = [b"generate", b"--model", str(tiny_run).encode(), b"--prompt", b"caf\xe9"]
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"aiayn", *argv], capture_output=True, timeout=120
    )
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "--prompt: not valid UTF-8 text" in err[0]


# -- CTranslate2 folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2_run(tiny_run, tmp_path_factory) -> Path:
    pytest.importorskip("ctranslate2")
    run = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("ct2") / "run"))
    assert main(["export-ct2", str(run)]) == 0
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:500])


def misstate_a_size(path: Path) -> None:
    """The first variable's byte count made 4 larger than its shape holds: CTranslate2's
    reader would trust it (a damaged file like this crashed the process)."""
    data = bytearray(path.read_bytes())
    at = 4 + 2 + struct.unpack_from("<H", data, 4)[0] + 8  # version, spec name, revision, count
    at += 2 + struct.unpack_from("<H", data, at)[0]  # the variable's name
    at += 1 + 4 * data[at] + 1  # its rank, dims and dtype
    struct.pack_into("<I", data, at, struct.unpack_from("<I", data, at)[0] + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda ct2: truncate(ct2 / "model.bin"), "model.bin: a tensor of"),
        (lambda ct2: misstate_a_size(ct2 / "model.bin"), "bytes, not its shape"),
        (lambda ct2: (ct2 / "model.bin").unlink(), "model.bin: no such file"),
        (lambda ct2: (ct2 / "config.json").unlink(), "config.json: no such file"),
        (lambda ct2: (ct2 / "config.json").write_text("{"), "config.json: not valid JSON"),
        (lambda ct2: (ct2 / "config.json").write_text("[]"), "config.json: not a JSON object"),
        (
            lambda ct2: (ct2 / "config.json").write_text('{"unk_token": 5}'),
            "config.json: unk_token=5 is not str",
        ),
        (lambda ct2: (ct2 / "shared_vocabulary.json").write_text("[1"), "not valid JSON"),
    ],
    ids=[
        "cut model.bin",
        "resized",
        "no model.bin",
        "no config",
        "bad JSON",
        "array",
        "bad type",
        "vocab",
    ],
)
def test_a_damaged_ct2_folder_is_one_line(ct2_run, tmp_path, capsys, damage, message):
    run = Path(shutil.copytree(ct2_run, tmp_path / "run"))
    damage(run / "ct2")
    assert main(["translate", "--model", str(run), "--engine", "ct2"]) == 2
    line = error_line(capsys)
    assert message in line and str(run / "ct2") in line, line


# -- trainer states --------------------------------------------------------------------------


def first(table: dict) -> object:
    return next(iter(table))


@pytest.mark.parametrize(
    "craft, field",
    [
        (lambda s: s["scheduler"].update(last_epoch="7"), "scheduler.last_epoch is str"),
        (lambda s: s["scheduler"].update(base_lrs=[1.0, 2.0]), "scheduler.base_lrs is not a list"),
        (lambda s: s["scheduler"].update(lr_lambdas=[{"x": 1}]), "scheduler.lr_lambdas[0]"),
        (lambda s: s["scheduler"].update(extra=1), "scheduler holds the unexpected key 'extra'"),
        (
            lambda s: s["optimizer"]["state"][first(s["optimizer"]["state"])].update(
                exp_avg=torch.zeros(3)
            ),
            "exp_avg is not a finite tensor of shape",
        ),
        (
            lambda s: s["optimizer"]["state"][first(s["optimizer"]["state"])].update(step="x"),
            "step is not a step count",
        ),
        (lambda s: s["optimizer"].update(state=[1]), "optimizer.state is not a table"),
        (lambda s: s["optimizer"]["state"].update({10**6: {}}), "names no parameter"),
        (lambda s: s["optimizer"]["param_groups"][0].update(betas="ab"), "betas is not a list"),
        (lambda s: s["optimizer"]["param_groups"][0].update(lr=None), "lr is NoneType"),
        (lambda s: s["optimizer"].update(param_groups={}), "param_groups is not a list"),
    ],
)
def test_a_crafted_optimizer_or_schedule_state_is_refused_by_field(run, capsys, craft, field):
    from aiayn.train.checkpoint import load_state, save_state

    state = load_state(run / "trainer_state.pt")
    craft(state)
    save_state(state, run / "trainer_state.pt")
    assert main(["train", "--out", str(run), "--resume", "--set", "train.max_steps=32"]) == 2
    line = error_line(capsys)
    assert "trainer_state.pt: field " in line and field in line, line
    assert "generator object" not in line


def test_an_untouched_state_still_resumes(run, capsys):
    assert main(["train", "--out", str(run), "--resume", "--set", "train.max_steps=32"]) == 0


# -- ablation results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "result.json: not valid JSON (Expecting value: line 1"),
        ("[]", "result.json: not a JSON object"),
        ('{"name": "base"}', "result.json: field 'curve' is missing"),
    ],
)
def test_a_damaged_ablation_result_names_its_file(tmp_path, capsys, content, message):
    import tomllib

    import tomli_w

    config = tomllib.loads(write_config(tmp_path).read_text())
    config["ablate"] = {"out": str(tmp_path / "runs"), "report": str(tmp_path / "r")}
    (tmp_path / "study.toml").write_text(tomli_w.dumps(config))
    (tmp_path / "runs" / "base-seed1").mkdir(parents=True)
    (tmp_path / "runs" / "base-seed1" / "result.json").write_text(content)
    assert main(["ablate", str(tmp_path / "study.toml")]) == 2
    assert message in error_line(capsys)


def test_a_result_of_every_field_but_of_another_variant_is_refused():
    from aiayn.ablate.result import check_result

    result = {
        "name": "1 head", "group": "", "set": [], "paper": "", "seed": 1, "train_minutes": 0.5,
        "minutes": 0.6, "val_nll": 3.2, "steps": 20, "curve": [[10, 3.5], [20, 3.2]],
        "val_bleu": 1.0, "test_bleu": None, "parameters": 1000,
    }  # fmt: skip
    assert check_result(result, "1 head", "r.json") is result
    with pytest.raises(ValueError, match="the result of '1 head', not of 'base'"):
        check_result(result, "base", "r.json")
    with pytest.raises(ValueError, match="field 'curve' is not a list of"):
        check_result({**result, "curve": [[1, float("nan")]]}, "1 head", "r.json")


# -- int8 scales -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-45, 1e-30, 0.0, 1e30, float("nan")])
def test_int8_scales_no_quantizer_writes_are_refused(tiny_run, tmp_path, capsys, scale):
    out = tmp_path / "q"
    assert main(["quantize", str(tiny_run), "--out", str(out)]) == 0
    tensors = load_file(str(out / "int8.safetensors"))
    name = next(n for n in tensors if n.endswith(".scale"))
    tensors[name] = torch.full_like(tensors[name], scale)
    with safe_open(str(out / "int8.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(out / "int8.safetensors"), metadata=metadata)
    capsys.readouterr()
    assert main(["translate", "--model", str(out), "--device", "cpu"]) == 2
    line = error_line(capsys)
    assert f"tensor '{name}' holds" in line and "expected scales from 1.19209e-07 to 1e+06" in line


def test_a_terminal_line_that_is_not_utf8_is_one_line(tiny_run, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # a C locale decodes a terminal's bytes with surrogate escapes
    monkeypatch.setattr(sys, "stdin", Terminal(f"{BAD}\n"))
    assert main(["translate", "--model", str(tiny_run)]) == 2
    err = capsys.readouterr().err  # the prompt "> " comes first on the error's line
    assert err.endswith(
        "aiayn translate: error: stdin: not valid UTF-8 text (character 3 is "
        "'\\udce9', a lone surrogate or an undecodable byte)\n"
    )
    assert "Traceback" not in err

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aiayn.cli import main
from tests.cli_helpers import write_config

RUN_FILES = {
    "config.toml",
    "tokenizer.json",
    "model.safetensors",
    "trainer_state.pt",
    "metrics.jsonl",
    "loss.png",
    "best.safetensors",
    "average.safetensors",
}


@pytest.fixture
def run(tiny_run: Path) -> Path:
    return tiny_run


def test_a_run_directory_holds_everything(run):
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20, 30]
    assert all("val_bleu" in r for r in records if "val_loss" in r)
    assert records[0]["loss"] > records[-2]["loss"]


def test_translate_reads_a_file_and_writes_one_line_per_input(run, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a man runs\n\nthe dog sees a cat\n")
    assert main(["translate", "--model", str(run), "--input", str(tmp_path / "in.txt")]) == 0
    out = capsys.readouterr().out.split("\n")
    assert len(out) == 4 and out[1] == "" and out[3] == ""


@pytest.mark.parametrize(
    "command",
    [
        ["translate", "--input", "IN"],
        ["evaluate", "--src", "IN", "--ref", "IN", "--json"],
        ["plot-attention", "--src", "a man runs", "--out", "OUT"],
    ],
)
def test_decoding_commands_run_on_the_device_asked_for(run, tmp_path, capsys, command):
    (tmp_path / "in.txt").write_text("a man runs\nthe dog sees a cat\n")
    args = [str(tmp_path / "in.txt") if a == "IN" else a for a in command]
    outputs = []
    for device in ("cpu", "auto"):  # auto: the CPU on a machine without CUDA
        argv = [a if a != "OUT" else str(tmp_path / device) for a in args]
        assert main([argv[0], "--model", str(run), *argv[1:], "--device", device]) == 0
        outputs.append(capsys.readouterr().out.replace(str(tmp_path / device), "OUT"))
    assert outputs[0] == outputs[1] and outputs[0]
    assert main(["translate", "--model", str(run), "--device", "tpu"]) == 2
    assert "--device='tpu': expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


def test_evaluate_json_has_bleu_chrf_and_signature(run, capsys, tmp_path):
    cfg = run / "config.toml"
    data = {
        line.split(" = ")[0]: line.split(" = ")[1].strip('"')
        for line in cfg.read_text().splitlines()
        if line.startswith("valid_")
    }
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run),
                "--src",
                data["valid_src"],
                "--ref",
                data["valid_tgt"],
                "--json",
                "--lowercase",
                "--beam",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"bleu", "chrf", "signature"}
    assert "case:lc" in result["signature"] and 0 <= result["bleu"] <= 100


def test_alpha_option_replaces_the_configs_length_penalty(run, tmp_path, capsys, monkeypatch):
    import aiayn.decode.translate as translate

    seen, search = [], translate.beam_search
    monkeypatch.setattr(
        translate, "beam_search", lambda *a, **kw: seen.append(a[4]) or search(*a, **kw)
    )
    (tmp_path / "in.txt").write_text("a man runs\n")
    args = ["translate", "--model", str(run), "--input", str(tmp_path / "in.txt"), "--beam", "2"]
    assert main(args) == 0 and main([*args, "--alpha", "1.5"]) == 0
    assert seen == [0.6, 1.5]  # the tiny config keeps the paper's 0.6
    capsys.readouterr()
    assert main([*args, "--alpha", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--alpha -1.0: the length penalty must be in [0, 10]") and len(err) <= 2


def test_a_sentence_longer_than_the_model_allows_is_warned_and_translated(run, tmp_path, capsys):
    (tmp_path / "long.txt").write_text(" ".join(["the big red dog"] * 20) + "\n")
    assert main(["translate", "--model", str(run), "--input", str(tmp_path / "long.txt")]) == 0
    captured = capsys.readouterr()
    assert "warning: 'the big red dog the big red do'... has" in captured.err
    assert "translating its first 23 (the model's maximum is 24)" in captured.err
    assert len(captured.out.splitlines()) == 1


def aiayn(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "aiayn", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tmp_path, capsys):
    config = write_config(tmp_path, max_steps=24, eval_every=4, average_last=1, precision="fp32")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", str(config), "--out", str(whole)]) == 0  # only the cut run is killed

    proc = aiayn("train", str(config), "--out", str(cut), "--set", "train.log_every=1")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill once a checkpoint exists and training went on
        metrics = cut / "metrics.jsonl"
        steps = (
            [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
            if (metrics.exists())
            else []
        )
        if steps and max(steps) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= json.loads((cut / "metrics.jsonl").read_text().splitlines()[-1])["step"] < 24

    assert main(["train", "--out", str(cut), "--resume"]) == 0
    assert "resumed" in capsys.readouterr().err
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    for name in a:
        assert (a[name] - b[name]).abs().max() <= 1e-6, name
    steps = [
        json.loads(x)["step"]
        for x in (cut / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(x)
    ]
    assert steps == sorted(steps)  # what the killed run logged past its checkpoint is gone

"""Ctrl-C and SIGTERM during `aiayn train`, on a real process."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aiayn.cli import main
from tests.cli_helpers import write_config

# Long enough that the signal, sent once two lines are logged (about step 10), finds the loop
# still running however slow the machine; the whole run and the resumed one are in-process.
STEPS = 120


def start(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "aiayn", "train", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_metrics(out: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Block until training has logged some steps (so the loop, not start-up, gets the signal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = out / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 2:
            return
        time.sleep(0.05)
    raise AssertionError("training did not start logging")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """(config, run directory) of the run the interrupted ones must end equal to: trained once
    for both signals."""
    folder = tmp_path_factory.mktemp("whole")
    config = write_config(folder, max_steps=STEPS, eval_every=30)
    assert main(["train", str(config), "--out", str(folder / "whole")]) == 0
    return config, folder / "whole"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_exits_0_and_resume_ends_as_if_never_stopped(
    tmp_path, sig, uninterrupted, capsys
):
    config, whole = uninterrupted
    out = tmp_path / "cut"
    proc = start(config, out)
    wait_for_metrics(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-500:]
    assert f"stopped ({sig.name}, checkpoint saved)" in err
    assert f"resume with: aiayn train --out {out} --resume" in err
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "resumed" in capsys.readouterr().err
    a = load_file(str(whole / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_a_second_ctrl_c_stops_at_once_and_the_checkpoint_stays_valid(tmp_path, capsys):
    config = write_config(tmp_path, max_steps=100_000, eval_every=20)
    out = tmp_path / "run"
    proc = start(config, out)
    wait_for_metrics(out, proc)
    deadline = time.monotonic() + 60
    while not (out / "trainer_state.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err[-500:]
    step = torch.load(out / "trainer_state.pt", weights_only=True)["step"]
    resumed = ["train", str(config), "--out", str(out), "--resume"]
    assert main([*resumed, "--set", f"train.max_steps={step + 1}"]) == 0
    assert "resumed" in capsys.readouterr().err


def test_two_trainings_into_one_directory_the_second_is_refused_naming_the_first(tmp_path, capsys):
    config = write_config(tmp_path, max_steps=100_000, eval_every=20)
    out = tmp_path / "run"
    first = start(config, out)
    try:
        wait_for_metrics(out, first)
        assert main(["train", str(config), "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another aiayn process (pid {first.pid})" in err.strip().splitlines()[-1]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_a_training_killed_before_its_first_checkpoint_blocks_neither_way_on(tmp_path, capsys):
    config = write_config(tmp_path, max_steps=100_000, eval_every=100_000)
    out = tmp_path / "run"
    first = start(config, out)
    try:
        wait_for_metrics(out, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert (out / "config.toml").exists() and not (out / "trainer_state.pt").exists()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    again = f"aiayn train {out / 'config.toml'} --out {out}"
    assert again in capsys.readouterr().err  # --resume says how to start it again
    sets = ["--set", "train.max_steps=2", "--set", "train.eval_every=2"]
    assert main(["train", str(out / "config.toml"), "--out", str(out), *sets]) == 0
    assert (out / "trainer_state.pt").exists()
    assert main(["train", str(config), "--out", str(out)]) == 2  # a checkpoint: kept now

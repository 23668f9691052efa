"""Two CPU processes under torchrun (gloo) train exactly as one process on the same batches."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aiayn.cli import main
from aiayn.tasks.translation import load_translator
from tests.cli_helpers import write_config

# No dropout: two ranks draw two random streams where one process draws one. Adam's eps is
# raised from 1e-9: the key bias's gradient is zero but for round-off (softmax ignores a shift
# shared by all keys), and a tiny eps turns that noise into steps of +-lr, which differ as soon
# as two ranks sum in another order than one process.
EXACT = {"max_steps": 6, "eval_every": 3, "average_last": 1, "precision": "fp32", "eps": 1e-4}
# 168-token batches cut an epoch of the toy corpus into 19 = 4 * 4 + 3: two ranks accumulating
# two batches each take four steps, then the epoch's last three batches would split 2 and 1
# (FSDP's collectives would not pair up). Six steps cross into the next epoch.
EPOCH_OF_4K_PLUS_3 = {"batch_tokens": 168}


def torchrun(*args: str, **popen: object) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node=2 -m aiayn ARGS`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.Popen(
        [*cmd, "-m", "aiayn", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers, as a machine failure would (Linux: reads /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == proc.pid:
            children.append(int(stat.parent.name))
    for pid in [proc.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def assert_same_weights(a: Path, b: Path, tol: float) -> None:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    for name in x:
        assert (x[name] - y[name]).abs().max() <= tol, name


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    """(config, run) of one process taking each step over four batches, as two ranks
    accumulating two each do."""
    folder = tmp_path_factory.mktemp("single")
    config = write_config(folder, **EXACT, **EPOCH_OF_4K_PLUS_3)
    run = folder / "run"
    overrides = ["--set", "model.dropout=0.0", "--set", "train.accumulate=4"]
    assert main(["train", str(config), "--out", str(run), *overrides]) == 0
    return config, run


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_train_like_one_on_the_same_batches(single, tmp_path, fsdp):
    config, one = single
    run = tmp_path / "run"
    before = set(tmp_path.iterdir())
    sets = ["--set", "model.dropout=0.0", "--set", f"train.fsdp={str(fsdp).lower()}"]
    sets += ["--set", "train.accumulate=2"]
    log = finish(torchrun("train", str(config), "--out", str(run), *sets))
    assert_same_weights(one, run, 1e-5)
    assert set(tmp_path.iterdir()) - before == {run}  # one run directory, written once
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert log.count("stopped (max_steps) at step 6") == 1  # only the main rank logs
    rates = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rates if "val_loss" in r] == [3, 6]
    assert max(r.get("epoch", 0) for r in rates) == 1  # past the epoch's uneven end
    # a sharded run's checkpoint is whole too: one process loads it and translates alike
    sources = ["a man sees the dog", "the small cat eats"]
    ours, reference = (load_translator(r, log=lambda _: None) for r in (run, one))
    assert ours.translate(sources, beam=2) == reference.translate(sources, beam=2)


@pytest.mark.skipif(sys.platform != "linux", reason="finds torchrun's workers in /proc")
def test_a_killed_distributed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    config = write_config(tmp_path, max_steps=24, eval_every=4, average_last=1)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    first = torchrun("train", str(config), "--out", str(whole))
    finish(first)

    proc = torchrun("train", str(config), "--out", str(cut), "--set", "train.log_every=1")
    deadline = time.monotonic() + 300
    metrics = cut / "metrics.jsonl"
    while time.monotonic() < deadline:  # kill once a checkpoint exists and training went on
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if lines and json.loads(lines[-1])["step"] >= 9:
            break
        time.sleep(0.05)
    kill_all(proc)
    proc.communicate()
    last = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert 8 <= last < 24

    log = finish(torchrun("train", "--out", str(cut), "--resume"))
    assert "resumed" in log
    assert_same_weights(whole, cut, 1e-6)


def test_a_sharded_resume_refuses_a_state_with_a_tensor_missing(single, tmp_path):
    import shutil

    import torch

    from aiayn.train.checkpoint import save_state

    run = Path(shutil.copytree(single[1], tmp_path / "run"))
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    state["model"].pop("transformer.encoder.layers.0.ffn.w_in.weight")
    save_state(state, run / "trainer_state.pt")
    sets = ["--set", "train.fsdp=true", "--set", "train.accumulate=2", "--set", "train.max_steps=8"]
    proc = torchrun("train", "--out", str(run), "--resume", *sets)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "'transformer.encoder.layers.0.ffn.w_in.weight' is missing" in err


def test_sharded_bf16_gathers_bf16_keeps_fp32_weights_and_trains_as_one_process(tmp_path):
    config = write_config(tmp_path, **{**EXACT, "precision": "bf16"}, **EPOCH_OF_4K_PLUS_3)
    one, run = tmp_path / "one", tmp_path / "run"
    sets = ["--set", "model.dropout=0.0"]
    assert (
        main(["train", str(config), "--out", str(one), *sets, "--set", "train.accumulate=4"]) == 0
    )
    sets += ["--set", "train.fsdp=true", "--set", "train.accumulate=2"]
    finish(torchrun("train", str(config), "--out", str(run), *sets))
    weights = load_file(str(run / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # the master weights
    # bf16 parameters in the forward pass, where one process autocasts fp32 ones: close
    assert_same_weights(one, run, 1e-2)

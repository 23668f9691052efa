"""A run directory as untrusted input: crafted states, links out of it, two writers, torn
metrics, full disks and resumes that would silently do something else."""

import shutil
from pathlib import Path

import pytest
import torch

from aiayn.cli import main
from aiayn.run.lock import RunLock
from aiayn.run.paths import inside
from aiayn.train.checkpoint import load_state, save_state
from tests.cli_helpers import write_config


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of a finished tiny run (30 steps, snapshots of steps 20 and 30)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn "), err
    return err[-1]


def resume(run: Path, *sets: str) -> int:
    return main(["train", "--out", str(run), "--resume", *sets])


def tamper(run: Path, **fields) -> None:
    state = load_state(run / "trainer_state.pt")
    save_state({**state, **fields}, run / "trainer_state.pt")


@pytest.mark.parametrize("name", ["{victim}", "../victim.safetensors", "step_1/../../x"])
def test_a_crafted_snapshot_name_neither_deletes_nor_reads_outside(run, tmp_path, capsys, name):
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"precious")
    tamper(run, snapshots=[name.format(victim=victim)])
    assert resume(run, "--set", "train.max_steps=40") == 2
    assert "snapshots" in one_error_line(capsys)
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("step", -5, "an integer >= 0"),
        ("step", "30", "an integer >= 0"),
        ("elapsed", float("nan"), "finite"),
        ("best", "high", "a finite number or None"),
        ("rng_torch", [torch.zeros(3)], "random generator states"),
        ("optimizer", [], "a table"),
    ],
)
def test_every_field_of_a_loaded_state_is_checked(run, capsys, field, value, expected):
    tamper(run, **{field: value})
    assert resume(run, "--set", "train.max_steps=40") == 2
    line = one_error_line(capsys)
    assert "trainer_state.pt" in line and repr(field) in line and expected in line


def test_a_state_that_is_no_table_is_refused_in_one_line(run, capsys):
    save_state([1, 2, 3], run / "trainer_state.pt")
    assert resume(run, "--set", "train.max_steps=40") == 2
    assert "not a trainer state" in one_error_line(capsys)


def test_run_files_that_link_out_of_the_run_are_refused(run, tmp_path, capsys):
    secret = tmp_path / "secret.json"
    shutil.copy(run / "tokenizer.json", secret)
    (run / "tokenizer.json").unlink()
    (run / "tokenizer.json").symlink_to(secret)
    assert main(["translate", "--model", str(run), "--input", str(secret)]) == 2
    assert "a link out of its directory" in one_error_line(capsys)
    with pytest.raises(ValueError, match="plain name"):
        inside(run, "/etc/passwd")


def test_a_stray_rank_variable_does_not_lift_the_overwrite_guard(
    run, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", str(write_config(tmp_path)), "--out", str(run)]) == 2
    assert "already holds files" in one_error_line(capsys)
    assert (run / "model.safetensors").read_bytes() == before


def test_a_second_writer_is_refused_naming_the_holder(run, capsys):
    import os

    with RunLock(run):
        assert resume(run, "--set", "train.max_steps=40") == 2
        assert f"in use by another aiayn process (pid {os.getpid()})" in one_error_line(capsys)
    assert not (run / ".lock").exists()


def test_a_torn_metrics_line_is_dropped_on_resume_and_said(run, capsys):
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 31, "lo')
    assert resume(run, "--set", "train.max_steps=32") == 0
    assert "dropped its last line" in capsys.readouterr().err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(line.startswith("{") and line.endswith("}") for line in lines)


def test_a_bad_metrics_line_names_the_file_and_line(run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = "[1, 2]"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert resume(run, "--set", "train.max_steps=32") == 2
    assert "metrics.jsonl: line 2 is not an object with a step" in one_error_line(capsys)


def test_leftover_temporary_files_are_cleared_by_the_next_run(run, capsys):
    leftover = run / ".model.safetensors.abc123.tmp"
    leftover.write_bytes(b"half")
    assert resume(run, "--set", "train.max_steps=31") == 0
    assert not leftover.exists()


def test_a_full_disk_in_torch_save_is_one_line(run, capsys, monkeypatch):
    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64\nmore")

    monkeypatch.setattr(torch, "save", full)
    before = (run / "trainer_state.pt").read_bytes()
    assert resume(run, "--set", "train.max_steps=40", "--set", "train.eval_every=1") == 2
    line = one_error_line(capsys)
    assert "trainer_state.pt: could not be written ([enforce fail" in line
    assert "previous version is kept" in line
    assert (run / "trainer_state.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_resuming_a_finished_run_is_refused_and_changes_nothing(run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert resume(run) == 2
    assert "finished at step 30: it took all train.max_steps=30 steps" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_with_a_different_config_file_is_refused(tiny_run, run, tmp_path, capsys):
    text = (tiny_run.parent / "tiny.toml").read_text()
    other = tmp_path / "other.toml"
    other.write_text(text.replace("lr = 0.003", "lr = 0.01"))
    assert main(["train", str(other), "--out", str(run), "--resume"]) == 2
    assert "sets train.lr=0.01, unlike the run" in one_error_line(capsys)


def test_resume_cannot_change_what_the_model_is(run, capsys):
    assert resume(run, "--set", "train.max_steps=40", "--set", "model.d_model=64") == 2
    assert "a resumed run keeps the model.d_model=32" in one_error_line(capsys)


def test_optimizer_settings_given_on_resume_are_the_ones_used(run, capsys):
    sets = ["train.max_steps=31", "train.lr=0.5", "train.beta1=0.5", "train.eps=1e-3"]
    assert resume(run, *(f"--set={s}" for s in sets)) == 0
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert group["betas"][0] == 0.5 and group["eps"] == 1e-3 and group["initial_lr"] == 0.5
    assert state["scheduler"]["base_lrs"] == [0.5]
    assert "lr = 0.5" in (run / "config.toml").read_text()


def test_a_first_step_that_fails_leaves_nothing_that_blocks_the_next_run(
    tmp_path, capsys, monkeypatch
):
    config, out = write_config(tmp_path, max_steps=2, eval_every=2), tmp_path / "new"

    def fails(*args, **kwargs):
        assert (out / "config.toml").exists() and (out / "tokenizer.json").exists()
        raise ValueError("the first step failed")

    monkeypatch.setattr("aiayn.train.trainer.Trainer.step", fails)
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert "the first step failed" in one_error_line(capsys)
    assert not out.exists()  # the run made it, and nothing in it was worth keeping
    monkeypatch.undo()
    assert main(["train", str(config), "--out", str(out)]) == 0


def test_a_run_that_fails_after_a_checkpoint_is_kept_for_resume(tmp_path, capsys, monkeypatch):
    config, out = write_config(tmp_path, max_steps=4, eval_every=2), tmp_path / "new"
    from aiayn.train.trainer import Trainer

    real = Trainer.step

    def fails_at_3(self, share):
        if self.state["step"] == 2:
            raise ValueError("step 3 failed")
        return real(self, share)

    monkeypatch.setattr(Trainer, "step", fails_at_3)
    assert main(["train", str(config), "--out", str(out)]) == 2
    monkeypatch.undo()
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert "pass --resume to continue it" in one_error_line(capsys)
    assert resume(out) == 0

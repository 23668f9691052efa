"""Every command that writes a folder goes through one mechanism (aiayn.run.folder.OutputFolder):
each is walked here against a link to an outside folder, a folder of someone else's files, a
folder another process holds, and a failure half-way, and must refuse the first three without
touching anything and undo only what it made in the last."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from aiayn.cli import main
from aiayn.run.lock import OWNER, RunLock, contents
from tests.cli_helpers import write_config
from tests.test_ablate import write_study


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run that every exporter takes (2 steps), and its Hugging Face export."""
    folder = tmp_path_factory.mktemp("sources")
    sets = ["--set", "model.positional=sinusoidal_halves", "--set", "model.activation=silu"]
    config = write_config(folder, max_steps=2, eval_every=2)
    assert main(["train", str(config), "--out", str(folder / "run"), *sets]) == 0
    assert main(["export-hf", str(folder / "run"), "--out", str(folder / "hf")]) == 0
    return folder / "run", folder / "hf"


def copy_run(tiny_run: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp / "run"))


# each command: (its arguments, the folder it writes) in a fresh tmp folder
Command = Callable[[Path, Path, Path], tuple[list[str], Path]]
COMMANDS: dict[str, Command] = {
    "train": lambda tmp, run, hf: (
        ["train", str(write_config(tmp, max_steps=2)), "--out", str(tmp / "out")],
        tmp / "out",
    ),
    "prepare": lambda tmp, run, hf: (
        ["prepare", str(write_config(tmp)), "--out", str(tmp / "out")],
        tmp / "out",
    ),
    "ablate": lambda tmp, run, hf: (
        ["ablate", str(write_study(tmp, [], seeds=[1], out=str(tmp / "study")))],
        tmp / "study" / "base-seed1",
    ),
    "import-hf": lambda tmp, run, hf: (
        ["import-hf", str(hf), "--out", str(tmp / "out")],
        tmp / "out",
    ),
    "export-hf": lambda tmp, run, hf: (
        ["export-hf", str(run), "--out", str(tmp / "out")],
        tmp / "out",
    ),
    "export-ct2 --out": lambda tmp, run, hf: (
        ["export-ct2", str(run), "--out", str(tmp / "out")],
        tmp / "out",
    ),
    "export-ct2 (default out)": lambda tmp, run, hf: (
        ["export-ct2", str(copy_run(run, tmp))],
        tmp / "run" / "ct2",
    ),
    "quantize": lambda tmp, run, hf: (
        ["quantize", str(run), "--out", str(tmp / "out")],
        tmp / "out",
    ),
}
REMEDY = {"train": "pass --resume", "ablate": "rename the variant"}


@pytest.fixture(params=list(COMMANDS))
def command(request, sources, tmp_path) -> tuple[str, list[str], Path]:
    args, out = COMMANDS[request.param](tmp_path, *sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    return request.param, args, out


def error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn "), err
    return err[-1]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Each entry of `folder` with its bytes (None for a folder)."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


def test_an_output_that_is_a_link_is_refused_and_the_outside_untouched(command, tmp_path, capsys):
    _, args, out = command
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    out.symlink_to(outside)
    assert main(args) == 2
    assert f"{out} is a link" in error(capsys)
    assert snapshot(outside) == {"keep.txt": b"mine"}


def test_a_folder_of_someone_elses_files_is_refused_naming_the_remedy(command, capsys):
    name, args, out = command
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(args) == 2
    line = error(capsys)
    assert f"{out} already holds files (keep.txt)" in line
    assert REMEDY.get(name.split()[0], "choose a new or empty --out") in line
    if name != "train":
        assert "--resume" not in line  # no other command has one
    assert snapshot(out) == {"keep.txt": b"mine"}


def test_a_folder_in_use_is_refused_naming_the_process(command, capsys):
    _, args, out = command
    out.mkdir()
    with RunLock(out):
        assert main(args) == 2
        assert f"{out} is in use by another aiayn process (pid {os.getpid()})" in error(capsys)
    assert list(out.iterdir()) == []


def failing(out: Path, seen: list[list[str]]) -> Callable:
    """A stand-in for a step half-way through a command: it notes what the command has
    written by then, and fails as a full disk would."""

    def fail(*args, **kwargs):
        seen.append(contents(out))
        raise OSError(28, "No space left on device")

    return fail


class HalfSaved:
    """A CTranslate2 spec whose save writes one file, then fails."""

    def __init__(self, spec, fail: Callable) -> None:
        self.spec, self.fail = spec, fail

    def optimize(self, **kwargs) -> None:
        self.spec.optimize(**kwargs)

    def save(self, path: str) -> None:
        (Path(path) / "model.bin").write_bytes(b"half")
        self.fail()


def break_half_way(name: str, out: Path, monkeypatch) -> list[list[str]]:
    seen: list[list[str]] = []
    fail = failing(out, seen)
    if name in ("train", "ablate"):
        monkeypatch.setattr("aiayn.train.trainer.Trainer.step", fail)
    elif name.startswith("export-ct2"):
        from aiayn.interop import ct2

        build = ct2.build_spec
        monkeypatch.setattr(ct2, "build_spec", lambda t: HalfSaved(build(t), fail))
    else:
        target = {
            "prepare": "aiayn.prepare.build.write_split",
            "import-hf": "aiayn.interop.hf_run.save_config",
            "export-hf": "aiayn.interop.hf_export.tokenizer_config",
            "quantize": "aiayn.decode.quantize_run.save_int8",
        }[name]
        monkeypatch.setattr(target, fail)
    return seen


@pytest.mark.parametrize("existed", [False, True], ids=["new folder", "empty folder"])
def test_a_failure_half_way_removes_only_what_the_command_made(
    command, monkeypatch, capsys, existed
):
    name, args, out = command
    if existed:
        out.mkdir()
    others = snapshot(out.parent)
    seen = break_half_way(name, out, monkeypatch)
    assert main(args) == 2
    assert "No space left on device" in error(capsys)
    assert seen and seen[0], "the command had written nothing when it failed"
    assert out.is_dir() == existed and (not existed or list(out.iterdir()) == [])
    assert {k: v for k, v in snapshot(out.parent).items() if k != out.name} == {
        k: v for k, v in others.items() if k != out.name
    }


def left_unfinished(out: Path, by: str) -> None:
    """`out` as a command killed half-way leaves it: its note, a partial file, the lock file."""
    out.mkdir()
    (out / OWNER).write_text(f"{by}\n")
    (out / "partial.tmp").write_bytes(b"half")
    (out / ".lock").write_text("12345\n")


@pytest.mark.parametrize("name", [c for c in COMMANDS if c != "ablate"])  # test_ablate has it
def test_a_folder_the_same_command_left_unfinished_is_written_again(name, sources, tmp_path):
    args, out = COMMANDS[name](tmp_path, *sources)
    left_unfinished(out, name.split()[0])
    assert main(args) == 0
    assert not (out / "partial.tmp").exists() and not (out / ".lock").exists()


def test_a_folder_another_command_left_is_refused_naming_it(sources, tmp_path, capsys):
    args, out = COMMANDS["quantize"](tmp_path, *sources)
    left_unfinished(out, "export-hf")
    assert main(args) == 2
    assert "already holds files (partial.tmp), aiayn export-hf's" in error(capsys)
    assert (out / "partial.tmp").read_bytes() == b"half"


def test_a_lock_that_is_no_regular_file_is_refused_naming_it(command, capsys):
    _, args, out = command
    out.mkdir()
    os.mkfifo(out / ".lock")  # once truncated as a file: "[Errno 22] Invalid argument"
    assert main(args) == 2
    line = error(capsys)
    assert f"{out / '.lock'}: the lock file of" in line and "is not a regular file" in line
    assert [p.name for p in out.iterdir()] == [".lock"]


def test_a_failed_command_removes_the_parent_folders_it_made(sources, tmp_path, capsys):
    (tmp_path / "kept").mkdir()
    (tmp_path / "not-hf").mkdir()  # no config.json: import-hf fails
    out = tmp_path / "kept" / "np" / "a" / "b"
    assert main(["import-hf", str(tmp_path / "not-hf"), "--out", str(out)]) == 2
    assert "config.json" in error(capsys)
    assert list((tmp_path / "kept").iterdir()) == []

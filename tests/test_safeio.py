"""aiayn.safeio, the one way aiayn opens a file it did not write and checks text from users."""

from __future__ import annotations

import gzip
import os
import re
import signal
from pathlib import Path

import pytest

from aiayn import cli, safeio
from aiayn.commands.common import check_args
from aiayn.safeio import (
    InputError,
    check_input,
    check_text,
    open_input,
    read_input,
    read_input_json,
    read_input_text,
)


@pytest.fixture(autouse=True)
def _watchdog():
    """A FIFO that is waited on would hang the test: fail it after 10 s instead."""

    def hung(*_: object) -> None:
        raise AssertionError("blocked on a file for 10 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path):
    os.mkfifo(tmp_path / "tokenizer.json")
    for read in (open_input, check_input, lambda p: read_input(p, 10)):
        with pytest.raises(InputError, match=r"tokenizer\.json: not a regular file"):
            read(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_device_is_refused(device):
    with pytest.raises(InputError, match=f"{device}: not a regular file"):
        read_input(device, 1 << 40)


def test_a_directory_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(InputError, match="a directory; expected a regular file"):
        open_input(tmp_path)
    with pytest.raises(InputError, match=r"absent\.json: no such file"):
        open_input(tmp_path / "absent.json")


def test_a_link_out_of_its_folder_is_refused_and_a_link_inside_is_not(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "secret").write_text("outside")
    (folder / "real.txt").write_text("inside")
    (folder / "out.txt").symlink_to(tmp_path / "secret")
    (folder / "in.txt").symlink_to(folder / "real.txt")
    with pytest.raises(InputError, match="a link out of its directory"):
        read_input(folder / "out.txt", 100, within=folder)
    assert read_input(folder / "in.txt", 100, within=folder) == b"inside"
    assert read_input(folder / "out.txt", 100) == b"outside"  # a path the user named


def test_the_size_bound_holds_and_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    assert read_input(path, 101) == b"x" * 101
    with pytest.raises(InputError, match="larger than 100 bytes"):
        read_input(path, 100)
    monkeypatch.setattr(safeio, "CHUNK", 7)  # read in chunks: a decompression is cut off too
    (tmp_path / "g.gz").write_bytes(gzip.compress(b"y" * 1000))
    with open(tmp_path / "g.gz", "rb") as raw, pytest.raises(InputError, match="than 50 bytes"):
        safeio.read_bounded(gzip.GzipFile(fileobj=raw), 50, path)
    with open(path, "rb") as f:
        assert safeio.read_bounded(f, 101, path) == b"x" * 101


def test_text_and_json_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b"{}\n\xff")
    with pytest.raises(InputError, match=r"c\.json: line 2 is not valid UTF-8"):
        read_input_text(path, 100)
    path.write_text("")
    with pytest.raises(InputError, match=r"c\.json: not valid JSON \(Expecting value: line 1"):
        read_input_json(path, 100)
    path.write_text("[" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_input_json(path, 1 << 20)


@pytest.mark.parametrize("text", ["\ud800", "ok \udcff", "a\udfffb"])
def test_lone_surrogates_and_undecodable_bytes_are_refused_by_name(text):
    with pytest.raises(ValueError, match="--prompt: not valid UTF-8 text"):
        check_text(text, "--prompt")
    parser = cli.parser()
    args = parser.parse_args(["generate", "--model", "run", "--stop", "fine", "--stop", text])
    with pytest.raises(ValueError, match="--stop: not valid UTF-8"):
        check_args(parser, args)
    args = parser.parse_args(["params", text])
    with pytest.raises(ValueError, match="config: not valid UTF-8"):
        check_args(parser, args)


def test_valid_text_passes_unchanged():
    for text in ("", "café 😀", "日本語", "\x00\n\t"):
        assert check_text(text, "x") is text
    parser = cli.parser()
    check_args(parser, parser.parse_args(["generate", "--model", "café", "--prompt", "😀"]))


# Every place in aiayn's source that opens or reads a file by a route other than aiayn.safeio,
# each with why it may: anything new must go through safeio (or be added here, with a reason).
READS = re.compile(
    r"\bopen\(|\.read_text\(|\.read_bytes\(|np\.load\(|torch\.load\(|safe_open\(|json\.load\("
    r"|tomllib\.load\(|from_file\(|gzip\.open\(|os\.open\("
)
ALLOWED = {
    "run/atomic.py": ["with open(tmp, "],  # reads back the temporary file it has just written
    "machine.py": ['Path("/proc/cpuinfo")'],  # the kernel's
    "cli.py": ["os.open(os.devnull"],
    "prepare/arrays.py": ['open(tmp, "wb")'],  # writers
    "train/metrics.py": ['open(path, "ab"'],
    "run/lock.py": ["os.open(path, flags, 0o644)", "os.O_RDONLY | os.O_NOFOLLOW"],  # the lock
    "train/state.py": ["`torch.load(weights_only=True)`"],  # a docstring
    # libraries that take a path or file safeio has checked (check_input, open_input) just before
    "run/weights.py": ["safe_open(str(check_input(path))", "torch.load(f, "],
    "prepare/dataset.py": ["np.load(check_input(path)", "def open("],
    "tasks/translation.py": ["PreparedParallel.open("],
}


def test_every_reader_in_the_source_goes_through_safeio():
    src = Path(safeio.__file__).parent
    found = []
    for path in sorted(src.rglob("*.py")):
        name = path.relative_to(src).as_posix()
        if name == "safeio.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if READS.search(line) and not any(a in line for a in ALLOWED.get(name, [])):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "read through aiayn.safeio instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (-2.5, True), (True, False), (float("nan"), False), (float("inf"), False),
     (10**400, False), ("1", False), (None, False)],
)  # fmt: skip
def test_finite_number_answers_for_any_value_without_raising(value, ok):
    # math.isfinite(10**400) raises OverflowError: a crafted result.json, trainer state or
    # metrics line holding such an integer crashed its reader
    assert safeio.finite_number(value) is ok

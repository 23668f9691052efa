import socket

import pytest

from aiayn.cli import main
from aiayn.serve.server import is_loopback


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "{missing}"], "not a run directory"),
        (["--port", "70000"], "--port 70000 must be in [0, 65535]"),
        (["--max-queue", "0"], "--max-queue 0 must be >= 1"),
        (["--window-ms", "nan"], "--window-ms nan must be in [0, 1000]"),
        (["--max-rows", "0"], "--max-rows 0 must be in [1, 4096]"),
        (["--time-limit", "nan"], "--time-limit nan must be in (0, 86400] seconds"),
        (["--device", "tpu"], "--device='tpu'"),
    ],
)
def test_bad_serve_arguments_are_one_line_errors(translation_run, tmp_path, capsys, argv, message):
    argv = [a.replace("{missing}", str(tmp_path / "none")) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(translation_run), *argv]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aiayn serve: error:") and message in err[-1], err


def test_a_port_in_use_is_named(translation_run, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(translation_run), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_only_loopback_addresses_pass_without_a_warning() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.3.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "::", "example.org"]))

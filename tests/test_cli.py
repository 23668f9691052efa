import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiayn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_params_of_the_paper_base_config_is_63_1_million(capsys):
    assert main(["params", str(ROOT / "configs/paper_base.toml")]) == 0
    out = capsys.readouterr().out
    total = int(re.search(r"([\d,]+) parameters", out).group(1).replace(",", ""))
    assert abs(total - 63.1e6) / 63.1e6 < 0.01
    parts = [int(n.replace(",", "")) for n in re.findall(r"^\s+\S+\s+([\d,]+)$", out, re.M)]
    assert sum(parts) == total and len(parts) >= 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\nd_model = 100\nn_heads = 3\n", "model.d_model=100 is invalid"),
        ("[model]\nbogus = 1\n", "unknown key model.bogus; valid keys:"),
        ("not toml [[[", "is not valid TOML"),
    ],
)
def test_params_errors_are_one_line_and_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["params", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("aiayn params: error:")


def test_module_entry_point_reports_a_missing_file_without_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "aiayn", "params", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "does not exist" in run.stderr


def test_every_shipped_config_loads_as_version_2(capsys) -> None:
    import tomllib

    from aiayn.ablate.study import load_study
    from aiayn.config import RunConfig

    for path in sorted((ROOT / "configs").glob("*.toml")):
        table = tomllib.loads(path.read_text(encoding="utf-8"))
        assert table["version"] == 2, path
        if "ablate" in table:
            load_study(path)  # a study: its base and every variant are validated configs
        else:
            RunConfig.load(path)
    assert capsys.readouterr().err == ""  # nothing read otherwise than it is named

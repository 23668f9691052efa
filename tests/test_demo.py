import subprocess
import sys
from pathlib import Path

import pytest

from aiayn.cli import main
from aiayn.demo import fresh_dir
from tests.cli_helpers import write_config
from tests.test_plots import assert_png_with_content

ROOT = Path(__file__).resolve().parents[1]


def test_fresh_dir_never_reuses_a_run_with_files(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    assert fresh_dir(base) == base
    base.mkdir()
    assert fresh_dir(base) == base  # empty: nothing to lose
    (base / "model.safetensors").write_bytes(b"x")
    assert fresh_dir(base) == tmp_path / "demo-2"
    (tmp_path / "demo-2").mkdir()
    (tmp_path / "demo-2" / "f").write_bytes(b"x")
    assert fresh_dir(base) == tmp_path / "demo-3"


def demo_output(stdout: str, out: Path) -> list[Path]:
    """Check the report's shape; return the pictures it names."""
    assert stdout.count("    aiayn     ") == 5 and stdout.count("    reference ") == 5
    assert "sacreBLEU" in stdout and "nrefs:1|case:mixed" in stdout
    pictures = [Path(line.strip()) for line in stdout.splitlines() if line.endswith(".png")]
    assert out / "loss.png" in pictures
    assert {p.name for p in pictures} >= {"cross_layer0.png", "encoder_layer0.png"}
    for path in pictures:
        assert_png_with_content(path)
    return pictures


def test_demo_trains_scores_and_draws_on_toy_data(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, max_steps=10, eval_every=5)
    data = tmp_path
    sets = [f"data.test_src={data / 'valid.src'}", f"data.test_tgt={data / 'valid.tgt'}"]
    args = ["demo", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    demo_output(capsys.readouterr().out, tmp_path / "run")
    assert 'device = "cpu"' in (tmp_path / "run" / "config.toml").read_text()


@pytest.mark.slow
def test_demo_on_the_shipped_multi30k_with_a_short_budget(tmp_path: Path) -> None:
    """The path `make demo` takes, on the files in data/, with a tiny model and 40 steps."""
    short = {
        "train.max_steps": 40,
        "train.eval_every": 20,
        "train.bleu": "false",
        "model.d_model": 64,
        "model.d_ff": 128,
        "model.n_layers": 1,
        "model.n_decoder_layers": 1,
        "data.vocab_size": 2000,
        "decode.beam": 1,
        "decode.max_extra": 10,
    }
    sets = [x for k, v in short.items() for x in ("--set", f"{k}={v}")]
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "aiayn", "demo", "--out", str(out), *sets]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    pictures = demo_output(done.stdout, out)
    assert len(pictures) == 1 + 3  # loss, and one layer each of encoder, decoder and cross

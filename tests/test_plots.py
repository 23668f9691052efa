import os
import pty
import select
import subprocess
import sys

import matplotlib.image
import pytest
import torch

from aiayn.cli import main
from aiayn.tasks.translation import load_translator
from aiayn.viz import attention_figure


def assert_png_with_content(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # not blank


def test_plot_metrics_draws_loss_lr_and_bleu(tiny_run, tmp_path, capsys):
    assert main(["plot-metrics", str(tiny_run), "--out", str(tmp_path / "m.png")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m.png")
    assert_png_with_content(tmp_path / "m.png")
    assert_png_with_content(tiny_run / "loss.png")


@pytest.mark.parametrize("value", ['{"a": 1}', '"0.1"', "true", "NaN", "-Infinity", "1" * 400])
def test_a_metric_that_is_no_finite_number_is_refused_naming_line_and_field(
    tmp_path, capsys, value
):
    (tmp_path / "pm").mkdir()
    good = '{"step": 0, "lr": 0.1}\n'
    (tmp_path / "pm" / "metrics.jsonl").write_text(good + f'{{"step": 1, "lr": {value}}}\n')
    assert main(["plot-metrics", str(tmp_path / "pm"), "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "metrics.jsonl: line 2: field 'lr'" in err
    assert "expected a finite number or null" in err
    assert not (tmp_path / "m.png").exists()


def test_plot_attention_writes_every_kind_for_every_layer(tiny_run, tmp_path, capsys):
    args = [
        "plot-attention",
        "--model",
        str(tiny_run),
        "--src",
        "a man sees the dog",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["cross_layer0.png", "decoder_layer0.png", "encoder_layer0.png"]
    for name in written:
        assert_png_with_content(tmp_path / name)
    assert "translation:" in capsys.readouterr().out
    args[-1] = str(tmp_path / "new" / "maps")
    assert main([*args, "--layer", "3"]) == 2
    assert "--layer 3 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # refused before any folder was made


def test_heatmap_of_an_identity_alignment_is_diagonal(tiny_run):
    translator = load_translator(tiny_run, log=lambda _: None)

    def identity(t_q, t_k):
        return torch.full((t_q, t_k), float("-inf")).fill_diagonal_(0.0)

    for layer in translator.model.transformer.decoder.layers:  # force cross-attention to i -> i
        forward = layer.cross_attn.forward
        layer.cross_attn.forward = lambda x, memory, mask=None, cache=None, f=forward: f(
            x, memory, identity(x.size(1), memory.size(1)), cache
        )
    maps = translator.attention("a man sees the dog", target="ein mann sieht der hund")
    weights, rows, cols = maps.layers["cross"][0]
    assert len(rows) == len(cols)
    fig = attention_figure(weights, rows, cols, "cross")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == weights.shape[0]
    for ax in panels:
        plotted = torch.tensor(ax.images[0].get_array())
        assert torch.equal(plotted, torch.eye(len(rows)))
        assert [t.get_text() for t in ax.get_yticklabels()] == rows


def read_until(fd, marker: bytes, timeout: float = 60.0) -> bytes:
    out = b""
    while marker not in out:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"timed out waiting for {marker!r}; got {out!r}"
        out += os.read(fd, 4096)
    return out


def test_interactive_translate_answers_each_line_under_a_terminal(tiny_run):
    expected = load_translator(tiny_run, log=lambda _: None).translate(
        ["a man runs", "the cat eats"], beam=1
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiayn", "translate", "--model", str(tiny_run), "--beam", "1"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    try:
        read_until(master, b"> ")
        for sentence, translation in zip(["a man runs", "the cat eats"], expected, strict=True):
            os.write(master, sentence.encode() + b"\n")
            answer = read_until(master, b"> ").decode()
            lines = [line for line in answer.replace("\r", "").split("\n") if line]
            assert lines[0] == sentence  # the terminal's echo of what was typed
            assert lines[1:-1] == ([translation] if translation else [])
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(master)


def test_plot_attention_writes_nothing_through_a_linked_folder(tiny_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "attention").symlink_to(outside)
    assert main(["plot-attention", "--model", str(run), "--src", "a man sees the dog"]) == 2
    assert "attention is a link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []

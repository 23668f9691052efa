"""int8 decoding: a trained run's linear layers quantized keep its translations (nearly) and
its logits close; the options that cannot go with it are refused in one line."""

import pytest
import torch
from torch import nn

from aiayn.cli import main
from aiayn.decode.quantize import quantize_int8
from aiayn.tasks.translation import load_translator
from tests.decode.test_quantize_run import quantized


@pytest.fixture
def run(tmp_path_factory):
    return quantized("encoder_decoder", tmp_path_factory)[0]  # the float run


def test_int8_keeps_the_logits_close_and_no_float_linear_remains(run):
    model = load_translator(run, log=lambda _: None).model
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, 60, (3, 7), generator=g), torch.randint(4, 60, (3, 5), generator=g)
    with torch.no_grad():
        fp32 = model(src, tgt)
        quantized = quantize_int8(model)  # a copy: the model itself stays fp32
        int8 = quantized(src, tgt)
        again = model(src, tgt)
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    assert torch.equal(again, fp32)
    error = ((int8 - fp32).abs().max() / fp32.abs().max()).item()
    assert 0 < error < 0.05


def test_translate_int8_gives_nearly_the_same_translations(run, capsys):
    inputs = run.parent / "valid.src"
    outputs = {}
    for flags in ([], ["--int8"]):
        capsys.readouterr()
        args = ["translate", "--model", str(run), "--beam", "1", "--input", str(inputs)]
        assert main([*args, *flags]) == 0
        outputs[bool(flags)] = capsys.readouterr().out.splitlines()
    same = sum(a == b for a, b in zip(outputs[False], outputs[True], strict=True))
    assert same >= 15 and sum(len(t.split()) for t in outputs[True]) > 40


def test_int8_with_ctranslate2_is_refused(run, capsys):
    args = ["translate", "--model", str(run), "--engine", "ct2", "--int8"]
    assert main([*args, "--input", str(run.parent / "valid.src")]) == 2
    assert "--int8 is aiayn's own int8" in capsys.readouterr().err

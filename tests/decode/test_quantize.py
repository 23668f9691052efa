"""int8 decoding: a trained run's linear layers quantized keep its translations (nearly) and
its logits close; the options that cannot go with it are refused in one line."""

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from aiayn.cli import main
from aiayn.decode.quantize import load_int8, quantize_int8, save_int8
from aiayn.models import ModelConfig, build_model
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


def test_wide_int8_layers_are_packed_for_onednn_on_amd_and_again_when_loaded(monkeypatch, tmp_path):
    packed = []  # (output width, engine) of each layer's packing, in order
    set_weight_bias = Int8Linear.set_weight_bias

    def spy(layer, weight, bias):
        packed.append((layer.out_features, torch.backends.quantized.engine))
        return set_weight_bias(layer, weight, bias)

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4100, d_model=16, n_heads=2, d_ff=4096, n_layers=1,
                      n_decoder_layers=1, max_len=16, dropout=0.0)  # fmt: skip
    model = build_model(cfg).eval()
    src, tgt = torch.randint(4, 4100, (2, 6)), torch.randint(4, 4100, (2, 5))
    engine = torch.backends.quantized.engine
    with torch.no_grad():
        monkeypatch.setattr("aiayn.decode.quantize.on_amd", lambda: False)
        plain = quantize_int8(model)(src, tgt)  # fbgemm's alone
        monkeypatch.setattr("aiayn.decode.quantize.on_amd", lambda: True)
        monkeypatch.setattr(Int8Linear, "set_weight_bias", spy)
        int8 = quantize_int8(model)
        # every layer packed by quantize_dynamic as torch's engine says, then the output layer
        # (4,100 wide) again for oneDNN, not the feed-forward nets' first layers (4,096 wide);
        # the engine is left as it was
        assert packed[-1] == (4100, "onednn") and {e for _, e in packed[:-1]} == {engine}
        assert torch.backends.quantized.engine == engine
        save_int8(int8, tmp_path / "int8.safetensors", source="test")
        packed.clear()
        loaded = load_int8(model, tmp_path / "int8.safetensors")
        assert packed[-1] == (4100, "onednn") and {e for _, e in packed[:-1]} == {engine}
        out = int8(src, tgt)
        assert torch.equal(loaded(src, tgt), out)  # the same weights, the same kernels
    torch.testing.assert_close(out, plain, atol=1e-4, rtol=1e-4)  # oneDNN's product: to rounding

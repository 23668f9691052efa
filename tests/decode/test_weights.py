"""Input-major weight copies compute what nn.Linear computes, and are lent only for a block."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aiayn.decode.quantize import quantize_int8
from aiayn.decode.search import Special, beam_search
from aiayn.decode.weights import (
    InputMajor,
    Reused,
    input_major_linear,
    onednn_linear,
    onednn_pays,
    search_weights,
)
from aiayn.models import ModelConfig, build_model
from aiayn.nn.feedforward import FeedForward

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN"
)


def test_lent_copies_give_the_same_logits_and_are_taken_back() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="decoder_only", vocab_size=50, d_model=32, n_heads=4, d_ff=64,
                      n_layers=2, max_len=16, activation="swiglu", bias=False)  # fmt: skip
    model = build_model(cfg).eval()
    tokens = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        plain = model(tokens)
        weights = InputMajor(model)
        assert len(weights.copies) == 2 * 4 + 1  # qkv, out, w_in, w_out per layer; the head
        with weights.active():
            lent = model(tokens)
            assert all("forward" in vars(layer) for layer, _, _ in weights.copies)
        assert not any("forward" in vars(layer) for layer, _, _ in weights.copies)
        assert torch.allclose(lent, plain, atol=1e-6)
        assert torch.equal(model(tokens), plain)


def test_a_failing_step_still_takes_the_copies_back() -> None:
    cfg = ModelConfig(arch="decoder_only", vocab_size=20, d_model=16, n_heads=2, d_ff=32,
                      n_layers=1, max_len=8, positional="learned")  # fmt: skip
    model = build_model(cfg)
    weights = InputMajor(model)
    with pytest.raises(ValueError, match="max_len=8"), weights.active():
        model(torch.full((1, 9), 1))  # beyond max_len: the learned positions refuse it
    assert not any("forward" in vars(layer) for layer, _, _ in weights.copies)


def test_a_search_output_layer_writes_each_step_over_the_last() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, d_model=16, n_heads=2, d_ff=32, n_layers=1,
                      n_decoder_layers=1, max_len=16, dropout=0.0)  # fmt: skip
    model = build_model(cfg).eval()
    steps = [torch.randint(3, 40, (n, 4)) for n in (3, 2, 3)]  # rows leave, then more come
    weights = search_weights(model)
    with torch.inference_mode():
        memory, pad = model.encode(torch.randint(3, 40, (3, 5)))
        plain = [model.decode(t, memory[: len(t)], pad[: len(t)]) for t in steps]
        blocks = []
        with weights.active():
            for tokens, want in zip(steps, plain, strict=True):
                logits = model.decode(tokens, memory[: len(tokens)], pad[: len(tokens)])
                assert torch.allclose(logits, want, atol=1e-6)  # read within its step
                blocks.append(logits.untyped_storage().data_ptr())
        assert torch.equal(model.decode(steps[0], memory, pad), plain[0])  # the layer's own again
    assert len(set(blocks)) == 1  # the output layer's one block, for fewer rows too
    assert len(weights.copies) > 1 and weights.overwrite == (model.generator,)


def test_the_reused_block_grows_for_more_rows_and_follows_the_dtype() -> None:
    into, like = Reused(), torch.zeros(1)
    first = into.block(2, 5, like)
    assert into.block(1, 5, like).data_ptr() == first.data_ptr()  # fewer rows: the same block
    assert into.block(3, 5, like).shape == (3, 5)  # more: a larger one
    assert into.block(3, 5, like.double()).dtype == torch.float64
    weight_t, x = torch.randn(4, 5), torch.randn(3, 4)
    out = input_major_linear(x, weight_t, None, into)
    assert torch.equal(out, x @ weight_t) and out.data_ptr() == into.memory.data_ptr()


@needs_onednn
@pytest.mark.parametrize("rows, bias", [(1, True), (7, False), (16, True)])
def test_onednn_linear_is_nn_linear_and_a_row_gets_the_same_alone(rows, bias) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(512, 96, bias=bias)
    packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), 160)
    b = None if layer.bias is None else layer.bias.detach()
    x = torch.randn(rows, 3, 512)
    out = onednn_linear(x, packed, b)
    torch.testing.assert_close(out, layer(x).detach(), atol=1e-5, rtol=1e-5)
    alone = torch.cat([onednn_linear(x[i : i + 1], packed, b) for i in range(rows)])
    assert torch.equal(alone, out)  # rows padded to a bucket: the others change nothing


@needs_onednn
def test_onednn_weights_are_borrowed_only_by_wide_layers_on_amd(monkeypatch) -> None:
    wide, narrow = nn.Linear(512, 8), nn.Linear(8, 512)
    monkeypatch.setattr("aiayn.decode.weights.on_amd", lambda: True)
    assert onednn_pays(wide) and not onednn_pays(narrow)
    monkeypatch.setattr("aiayn.decode.weights.on_amd", lambda: False)
    assert not onednn_pays(wide)


@needs_onednn
def test_a_beam_search_over_onednn_weights_finds_what_mkl_finds(monkeypatch) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=60, d_model=512, n_heads=8, d_ff=512, n_layers=1,
                      n_decoder_layers=2, max_len=32, dropout=0.0)  # fmt: skip
    model = build_model(cfg).eval()
    src, special = torch.randint(3, 60, (5, 9)), Special(bos=1, eos=2, pad=0)
    found = {}
    for amd in (False, True):
        monkeypatch.setattr("aiayn.decode.weights.on_amd", lambda amd=amd: amd)
        with search_weights(model).active():
            found[amd] = beam_search(model, src, special, beam=4, max_extra=8)
    assert [t for t, _ in found[True]] == [t for t, _ in found[False]]
    for (_, a), (_, b) in zip(found[True], found[False], strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def _relu_model(d_model: int):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=60, d_model=d_model, n_heads=8, d_ff=256, n_layers=1,
                      n_decoder_layers=2, max_len=32, dropout=0.0)  # fmt: skip
    return build_model(cfg).eval()


def _feed_forwards(model):
    return [m for m in model.modules() if isinstance(m, FeedForward)]


@needs_onednn
def test_a_relu_net_over_onednn_weights_applies_its_relu_in_the_first_product(monkeypatch):
    monkeypatch.setattr("aiayn.decode.weights.on_amd", lambda: True)
    model, x = _relu_model(512), torch.randn(3, 5, 512)
    weights = InputMajor(model)
    assert [ff for ff, _ in weights.relu_ffs] == _feed_forwards(model)  # 1 + 2 layers
    with torch.inference_mode(), weights.active():
        for ff in _feed_forwards(model):
            apart = ff.w_out(F.relu(ff.w_in(x)))  # both layers lent oneDNN's weights
            assert torch.equal(ff(x), apart)
    assert not any("forward" in vars(ff) for ff in _feed_forwards(model))


def test_an_int8_relu_net_applies_its_relu_in_the_int8_product() -> None:
    model = quantize_int8(_relu_model(64))
    x = torch.randn(3, 5, 64)
    weights = InputMajor(model)
    assert not weights.copies and len(weights.relu_ffs) == 3
    with torch.inference_mode():
        plain = [ff(x) for ff in _feed_forwards(model)]
        with weights.active():
            fused = [ff(x) for ff in _feed_forwards(model)]
    assert all(torch.equal(a, b) for a, b in zip(plain, fused, strict=True))


def test_other_activations_and_mkl_weights_keep_their_forward() -> None:
    model = _relu_model(64)  # narrower than ONEDNN_FROM: MKL, which applies no ReLU
    assert not InputMajor(model).relu_ffs
    cfg = ModelConfig(arch="decoder_only", vocab_size=50, d_model=32, n_heads=4, d_ff=64,
                      n_layers=2, max_len=16, activation="gelu")  # fmt: skip
    assert not InputMajor(quantize_int8(build_model(cfg).eval())).relu_ffs

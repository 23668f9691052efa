"""Parity with torch's own nn.Transformer, weights copied over by `from_nn_transformer`."""

import copy

import pytest
import torch
from torch import nn

from aiayn.interop.torch_nn import from_nn_transformer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the reference's fast-path notes

B, S, T, D = 3, 7, 6, 64
VARIANTS = [{}, {"norm_first": True}, {"activation": "gelu"}, {"bias": False}]


def make_reference(**kw) -> nn.Transformer:
    return nn.Transformer(
        d_model=D,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=128,
        dropout=0.0,
        batch_first=True,
        **kw,
    )


def batch():
    src, tgt = torch.randn(B, S, D), torch.randn(B, T, D)
    src_pad = torch.zeros(B, S, dtype=torch.bool)
    src_pad[0, 5:], src_pad[1, 2:] = True, True
    tgt_pad = torch.zeros(B, T, dtype=torch.bool)
    tgt_pad[0, 4:], tgt_pad[2, 1:] = True, True
    return src, tgt, src_pad, tgt_pad


def reference_forward(m: nn.Transformer, src, tgt, src_pad, tgt_pad):
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # torch: True = blocked
    return m(
        src,
        tgt,
        tgt_mask=causal,
        src_key_padding_mask=src_pad,
        tgt_key_padding_mask=tgt_pad,
        memory_key_padding_mask=src_pad,
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_output_matches_nn_transformer(variant, train):
    ref = make_reference(**variant).train(train)
    ours = from_nn_transformer(ref).train(train)
    src, tgt, src_pad, tgt_pad = batch()
    with torch.no_grad():
        expected = reference_forward(ref, src, tgt, src_pad, tgt_pad)
        got = ours(src, tgt, src_pad, tgt_pad)
    assert got.shape == (B, T, D)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_parameter_gradient_matches_nn_transformer(variant):
    ref = make_reference(**variant)
    ours = from_nn_transformer(ref)
    src, tgt, src_pad, tgt_pad = batch()
    weights = torch.randn(B, T, D)
    (reference_forward(ref, src, tgt, src_pad, tgt_pad) * weights).sum().backward()
    (ours(src, tgt, src_pad, tgt_pad) * weights).sum().backward()

    # Carry the reference's gradients through the same weight mapping, then compare by name.
    grads_as_weights = copy.deepcopy(ref)
    for p, g in zip(grads_as_weights.parameters(), ref.parameters(), strict=True):
        p.data = g.grad.clone()
    expected = from_nn_transformer(grads_as_weights).state_dict()
    n_params = 0
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-4, rtol=0, msg=name)
        n_params += p.numel()
    assert n_params == sum(p.numel() for p in ref.parameters())


def test_imported_stack_is_causal_over_the_target():
    ours = from_nn_transformer(make_reference())
    src, tgt, _, _ = batch()
    changed = tgt.clone()
    changed[:, 4:] = torch.randn(B, T - 4, D)
    with torch.no_grad():
        a, b = ours(src, tgt), ours(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_batch_first_false_is_refused():
    m = nn.Transformer(
        d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32
    )
    with pytest.raises(ValueError, match="batch_first"):
        from_nn_transformer(m)


def test_imported_stack_runs_attention_by_a_runs_default_path():
    from aiayn.config import TrainConfig
    from aiayn.nn.attention import MultiHeadAttention
    from aiayn.runtime.attention import KERNELS

    ours = from_nn_transformer(make_reference())
    kernels = {m.kernel for m in ours.modules() if isinstance(m, MultiHeadAttention)}
    assert kernels == {KERNELS[TrainConfig().attn_impl]}

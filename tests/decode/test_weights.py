"""Input-major weight copies compute what nn.Linear computes, and are lent only for a block."""

import pytest
import torch

from aiayn.decode.weights import InputMajor
from aiayn.models import ModelConfig, build_model


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

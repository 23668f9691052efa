import pytest
import torch
import torch.nn.functional as F

from aiayn.nn.feedforward import FeedForward, GatedFeedForward, feed_forward


@pytest.mark.parametrize(
    "name, act",
    [
        ("relu", F.relu),
        ("gelu", F.gelu),
        ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
        ("silu", F.silu),
    ],
)
def test_feed_forward_is_two_linear_maps_around_the_activation(name, act):
    ffn = feed_forward(name, 8, 32)
    assert isinstance(ffn, FeedForward)
    x = torch.randn(2, 3, 8)
    w1, b1, w2, b2 = ffn.w_in.weight, ffn.w_in.bias, ffn.w_out.weight, ffn.w_out.bias
    torch.testing.assert_close(ffn(x), act(x @ w1.T + b1) @ w2.T + b2)


def test_relu_ffn_is_max_0_form_of_the_paper():
    ffn = feed_forward("relu", 8, 32)
    x = torch.randn(4, 8)
    h = torch.maximum(torch.zeros(()), x @ ffn.w_in.weight.T + ffn.w_in.bias)
    torch.testing.assert_close(ffn(x), h @ ffn.w_out.weight.T + ffn.w_out.bias)


@pytest.mark.parametrize("name, act", [("swiglu", F.silu), ("geglu", F.gelu)])
def test_gated_feed_forward_matches_the_glu_formula(name, act):
    ffn = feed_forward(name, 8, 16, bias=False)
    assert isinstance(ffn, GatedFeedForward)
    w, v = ffn.w_in.weight.chunk(2)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(ffn(x), (act(x @ w.T) * (x @ v.T)) @ ffn.w_out.weight.T)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="'tanh'"):
        feed_forward("tanh", 8, 16)

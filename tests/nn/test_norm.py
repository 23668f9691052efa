import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from aiayn.nn.norm import LayerNorm, RMSNorm, layer_norm_math, norm_factory, rms_norm_math


def randomise(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


def test_layernorm_matches_torch_layernorm_with_copied_weights():
    ours, ref = LayerNorm(16, eps=1e-5), nn.LayerNorm(16, eps=1e-5)
    randomise(ours)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 16) * 4 + 2
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_layernorm_without_bias():
    ours, ref = LayerNorm(16, bias=False), nn.LayerNorm(16, bias=False)
    randomise(ours)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 16)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_rmsnorm_matches_torch_rmsnorm_with_copied_weights():
    ours, ref = RMSNorm(16, eps=1e-6), nn.RMSNorm(16, eps=1e-6)
    randomise(ours)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 16) * 3
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def math_of(norm: nn.Module):
    """The written-out formula with the module's own parameters and eps."""
    if isinstance(norm, LayerNorm):
        return lambda x: layer_norm_math(x, norm.weight, norm.bias, norm.eps)
    return lambda x: rms_norm_math(x, norm.weight, norm.eps)


@pytest.mark.parametrize(
    "make", [lambda: LayerNorm(6), lambda: LayerNorm(6, bias=False), lambda: RMSNorm(6)]
)
def test_fused_kernel_equals_the_written_out_formula_in_value_and_gradient(make):
    norm = make().double()
    randomise(norm)
    x = (torch.randn(2, 3, 6, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    fused, math = norm(x), math_of(norm)(x)
    torch.testing.assert_close(fused, math, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(fused)
    params = (x, *norm.parameters())
    g_fused = torch.autograd.grad(fused, params, upstream)
    g_math = torch.autograd.grad(math, params, upstream)
    for a, b in zip(g_fused, g_math, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
@pytest.mark.parametrize("path", ["fused", "math"])
def test_norm_gradcheck_float64(cls, path):
    norm = cls(6).double()
    randomise(norm)
    run = norm if path == "fused" else math_of(norm)
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    params = tuple(norm.parameters())
    assert gradcheck(lambda x, *_: run(x), (x, *params))


def test_norm_factory_makes_fresh_modules_and_refuses_unknown_names():
    make = norm_factory("rmsnorm", 8)
    a, b = make(), make()
    assert isinstance(a, RMSNorm) and a is not b
    with pytest.raises(ValueError, match="'batchnorm'"):
        norm_factory("batchnorm", 8)

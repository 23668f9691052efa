import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from aiayn.nn.norm import LayerNorm, RMSNorm, norm_factory


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


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_norm_gradcheck_float64(cls):
    norm = cls(6).double()
    randomise(norm)
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    params = tuple(norm.parameters())
    assert gradcheck(lambda x, *_: norm(x), (x, *params))


def test_norm_factory_makes_fresh_modules_and_refuses_unknown_names():
    make = norm_factory("rmsnorm", 8)
    a, b = make(), make()
    assert isinstance(a, RMSNorm) and a is not b
    with pytest.raises(ValueError, match="'batchnorm'"):
        norm_factory("batchnorm", 8)

import pytest
import torch

from aiayn.nn.dropout import Dropout, dropout


def test_drops_a_fraction_p_and_scales_the_rest() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.3)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.005
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased in expectation


def test_gradient_is_the_same_mask_and_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.5)
    y.sum().backward()
    expected = torch.where(y != 0, torch.tensor(2.0), torch.tensor(0.0))
    assert torch.equal(x.grad, expected)


def test_bf16_input_keeps_its_dtype_and_rate() -> None:
    torch.manual_seed(2)
    y = dropout(torch.ones(100_000, dtype=torch.bfloat16), 0.1)
    assert y.dtype == torch.bfloat16
    assert abs((y == 0).float().mean().item() - 0.1) < 0.01


def test_module_is_identity_in_eval_and_with_p_zero() -> None:
    x = torch.randn(8, 8)
    drop = Dropout(0.5).eval()
    assert drop(x) is x
    assert dropout(x, 0.0) is x


def test_bad_probability_is_named() -> None:
    with pytest.raises(ValueError, match=r"p=1\.0"):
        Dropout(1.0)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_mask_elements_are_independent_draws_at_rate_p(p: float) -> None:
    from aiayn.nn.dropout import keep_mask

    torch.manual_seed(3)
    keep = keep_mask(torch.Size([400_001]), p, torch.device("cpu")).float()
    assert abs(keep.mean().item() - (1 - p)) < 0.004
    # the four draws cut from one 64-bit integer, and neighbouring integers, are uncorrelated
    for lag in (1, 2, 3, 4, 5):
        a, b = keep[:-lag] - keep.mean(), keep[lag:] - keep.mean()
        assert abs((a * b).mean().item()) / keep.var().item() < 0.01

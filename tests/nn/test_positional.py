import math

import pytest
import torch
from torch.autograd import gradcheck

from aiayn.nn.attention import attention_math
from aiayn.nn.positional import (
    ALiBi,
    Learned,
    Rotary,
    Sinusoidal,
    alibi_slopes,
    apply_rotary,
    positional_encoding,
)


def test_sinusoidal_equals_the_papers_formula():
    d_model = 6
    pe = Sinusoidal(d_model).embed(torch.zeros(1, 4, d_model), torch.arange(4))[0]
    for pos in range(4):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_known_values():
    pe = Sinusoidal(4).embed(torch.zeros(1, 2, 4), torch.arange(2))[0]
    expected = [[0.0, 1.0, 0.0, 1.0], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]]
    torch.testing.assert_close(pe, torch.tensor(expected), atol=1e-6, rtol=0)


def test_sinusoidal_per_row_positions_match_shared_positions():
    pe = Sinusoidal(8)
    x = torch.randn(2, 5, 8)
    rows = torch.arange(5).expand(2, 5)
    torch.testing.assert_close(pe.embed(x, rows), pe.embed(x, torch.arange(5)))


def test_rope_scores_depend_only_on_relative_offset():
    rope = Rotary(8)
    q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)

    def scores(start: int) -> torch.Tensor:
        rot = rope.rotation(torch.arange(start, start + 5))
        return apply_rotary(q, rot) @ apply_rotary(k, rot).transpose(-2, -1)

    torch.testing.assert_close(scores(0), scores(37), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(0), q @ k.transpose(-2, -1), atol=1e-3)


def test_rope_preserves_norms_and_leaves_position_zero_alone():
    rope = Rotary(8)
    x = torch.randn(1, 2, 5, 8)
    y = apply_rotary(x, rope.rotation(torch.arange(5)))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])


def test_rope_per_row_positions_broadcast_over_heads():
    rope = Rotary(8)
    x = torch.randn(2, 3, 5, 8)
    shared = apply_rotary(x, rope.rotation(torch.arange(5)))
    rows = apply_rotary(x, rope.rotation(torch.arange(5).expand(2, 5)))
    torch.testing.assert_close(rows, shared)


def test_alibi_slopes_for_8_heads_are_powers_of_one_half():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]


def test_alibi_slopes_for_non_power_of_two_heads():
    # the ALiBi paper's rule: the 4-head slopes, then every other one of the 8-head slopes
    assert alibi_slopes(6).tolist() == pytest.approx([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])


def test_alibi_bias_is_minus_slope_times_distance():
    bias = ALiBi(2).score_bias(torch.arange(3), torch.arange(3))
    assert bias.shape == (2, 3, 3)
    assert alibi_slopes(2).tolist() == [1 / 16, 1 / 256]
    distance = torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    assert torch.equal(bias[0], -distance / 16)
    assert torch.equal(bias[1], -distance / 256)


def test_learned_positions_refuse_positions_past_max_len():
    pe = Learned(4, 8)
    with pytest.raises(ValueError, match=r"position 5 .*max_len=4"):
        pe.embed(torch.zeros(1, 6, 8), torch.arange(6))


def test_unknown_positional_name_is_refused():
    with pytest.raises(ValueError, match="'relative'"):
        positional_encoding("relative", 8, 2, 16)


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_additive_encodings_gradcheck_float64(name):
    pe = positional_encoding(name, 6, 2, 16).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: pe.embed(x, torch.arange(5)), (x,))
    if name == "learned":
        weight = pe.table.weight
        assert gradcheck(lambda w: torch.nn.functional.embedding(torch.arange(5), w), (weight,))


def test_rope_gradcheck_float64():
    rot = tuple(t.double() for t in Rotary(4).rotation(torch.arange(5)))
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: apply_rotary(x, rot), (x,))


def test_alibi_gradcheck_float64_through_attention():
    bias = ALiBi(2).score_bias(torch.arange(4), torch.arange(4)).double()
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert gradcheck(lambda q, k, v: attention_math(q, k, v, bias)[0], (q, k, v))


def test_sinusoidal_halves_holds_the_same_values_sines_first():
    d_model, positions = 8, torch.arange(6)
    x = torch.zeros(1, 6, d_model)
    paper = Sinusoidal(d_model).embed(x, positions)[0]
    halves = positional_encoding("sinusoidal_halves", d_model, 2, 16).embed(x, positions)[0]
    torch.testing.assert_close(halves[:, : d_model // 2], paper[:, 0::2])
    torch.testing.assert_close(halves[:, d_model // 2 :], paper[:, 1::2])

"""`row_topk` finds what `Tensor.topk` finds, by brute force over random rows."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aiayn.decode.topk import chunk_size, row_topk


def _check(x: torch.Tensor, k: int) -> None:
    values, indices = row_topk(x, k)
    want_values, want_indices = x.topk(k, dim=1)
    assert torch.equal(values, want_values)  # the same floats, largest first
    assert torch.equal(x.gather(1, indices), values)  # each at its own index
    assert all(len(set(row)) == k for row in indices.tolist())  # no entry twice
    distinct = [len(set(row)) == len(row) for row in x.tolist()]
    for row, ok in enumerate(distinct):
        if ok:  # without ties, the very same indices
            assert torch.equal(indices[row], want_indices[row])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 6),
    v=st.sampled_from([1600, 2000, 4000, 8000]),
    k=st.integers(1, 10),
    levels=st.sampled_from([None, 3, 50]),  # None: distinct values; else ties among few levels
    seed=st.integers(0, 2**16),
)
def test_row_topk_equals_topk(rows, v, k, levels, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, v, generator=g)
    if levels is not None:
        x = torch.randint(0, levels, (rows, v), generator=g).float()
    x[:, torch.randint(0, v, (v // 10,), generator=g)] = float("-inf")  # banned tokens
    assert chunk_size(v, k) is not None  # the two passes are what is tested
    _check(x, k)


def test_the_k_largest_all_in_one_chunk_are_found():
    # every large entry in the first chunk: the other chunks' maxima must not crowd it out
    x = torch.randn(3, 8000) - 10
    x[:, :10] = torch.arange(10, 0, -1).float()
    _check(x, 10)
    assert row_topk(x, 10)[1].tolist() == [list(range(10))] * 3


def test_nan_comes_first_as_in_topk():
    # topk ranks NaN above every number; beam search then sees the NaN and refuses
    x = torch.randn(2, 8000)
    x[1, 4321] = float("nan")
    values, indices = row_topk(x, 10)
    assert values[1, 0].isnan() and indices[1, 0] == 4321
    assert torch.equal(values[0], x[0].topk(10).values)


@pytest.mark.parametrize("v,k", [(7919, 10), (8000, 400), (30, 2)])
def test_rows_two_passes_would_not_help_take_topk(v, k):
    # a prime length, too many wanted, a short row: torch's topk itself
    assert chunk_size(v, k) is None
    x = torch.randn(4, v)
    assert all(torch.equal(a, b) for a, b in zip(row_topk(x, k), x.topk(k, dim=1), strict=True))


def test_a_strided_row_takes_topk():
    x = torch.randn(8000, 4).t()  # not contiguous: no chunked view of it
    assert all(torch.equal(a, b) for a, b in zip(row_topk(x, 10), x.topk(10, dim=1), strict=True))

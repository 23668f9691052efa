import torch

from aiayn.nn.masks import CAUSAL, attention_mask, causal_mask, padding_mask


def test_padding_mask_marks_pad_ids():
    tokens = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    assert padding_mask(tokens, 0).tolist() == [
        [False, False, True, True],
        [False, True, True, True],
    ]


def test_causal_mask_lets_each_query_see_itself_and_the_past():
    assert causal_mask(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]


def test_causal_mask_with_cached_keys_aligns_queries_to_the_end():
    # two new queries over four keys: they are positions 2 and 3
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_attention_mask_combines_padding_causality_and_bias():
    pad = torch.tensor([[False, False, True]])
    mask = attention_mask(3, 3, pad, causal=True)
    assert mask.shape == (1, 1, 3, 3) and mask.dtype == torch.bool
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    bias = torch.full((2, 3, 3), 0.5)
    merged = attention_mask(3, 3, pad, causal=True, bias=bias)
    assert merged.shape == (1, 2, 3, 3)
    assert torch.equal(torch.isinf(merged[0, 1]), ~mask[0, 0])
    assert torch.all(merged[0, 1][mask[0, 0]] == 0.5)


def test_attention_mask_is_none_when_nothing_is_masked():
    assert attention_mask(3, 3) is None


def test_one_cached_query_needs_no_causal_mask():
    # the newest position may see every key, so decoding steps attend unmasked (fast kernels)
    assert causal_mask(1, 5).all()
    assert attention_mask(1, 5, causal=True) is None
    pad = torch.tensor([[True, False, False, False, False]])
    mask = attention_mask(1, 5, pad, causal=True)
    assert mask[0, 0].tolist() == [[False, True, True, True, True]]


def test_causality_alone_over_square_attention_is_left_to_the_kernel():
    assert attention_mask(4, 4, causal=True) is CAUSAL
    assert isinstance(attention_mask(3, 5, causal=True), torch.Tensor)  # cached keys before
    pad = torch.tensor([[False, False, False, True]])
    assert isinstance(attention_mask(4, 4, pad, causal=True), torch.Tensor)

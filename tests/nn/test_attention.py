import pytest
import torch
from torch.autograd import gradcheck

from aiayn.nn.attention import CrossAttention, SelfAttention, attention_math, record_attention
from aiayn.nn.masks import CAUSAL, attention_mask, causal_mask
from aiayn.nn.positional import ALiBi
from aiayn.runtime.attention import attention, fused, one_query, use_attention

B, H, TQ, TK, D = 2, 4, 5, 7, 8


def masks(t_q: int, t_k: int) -> dict[str, torch.Tensor | None]:
    pad = torch.zeros(B, t_k, dtype=torch.bool)
    pad[0, t_k - 2 :] = True
    bias = ALiBi(H).score_bias(torch.arange(t_k - t_q, t_k), torch.arange(t_k))
    return {
        "none": None,
        "padding": attention_mask(t_q, t_k, pad),
        "causal": attention_mask(t_q, t_k, causal=True),
        "padding+causal": attention_mask(t_q, t_k, pad, causal=True),
        "float bias": attention_mask(t_q, t_k, bias=bias),
        "padding+causal+bias": attention_mask(t_q, t_k, pad, causal=True, bias=bias),
    }


@pytest.mark.parametrize("kind", list(masks(TQ, TK)))
def test_math_and_sdpa_paths_agree_under_every_mask(kind):
    q, k, v = torch.randn(B, H, TQ, D), torch.randn(B, H, TK, D), torch.randn(B, H, TK, D)
    mask = masks(TQ, TK)[kind]
    math_out = attention(q, k, v, mask, impl="math")
    sdpa_out = attention(q, k, v, mask, impl="sdpa")
    torch.testing.assert_close(math_out, sdpa_out, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", [*masks(1, TK), "CAUSAL"])
def test_one_query_kernel_agrees_with_the_written_out_path_under_every_mask(kind):
    q, k, v = torch.randn(B, H, 1, D), torch.randn(B, H, TK, D), torch.randn(B, H, TK, D)
    mask = CAUSAL if kind == "CAUSAL" else masks(1, TK)[kind]
    expected = attention_math(q, k, v, mask)[0]  # CAUSAL: the query is the last position
    torch.testing.assert_close(one_query(q, k, v, mask), expected, atol=1e-6, rtol=0)


def test_one_query_kernel_reads_a_cache_buffers_filled_part_and_has_gradients():
    buf = torch.randn(B, H, 16, D, dtype=torch.float64)  # a cache: room past the 5 filled
    q = torch.randn(B, H, 1, D, dtype=torch.float64, requires_grad=True)
    k, v = buf[:, :, :5].requires_grad_(), buf[:, :, 5:10].requires_grad_()
    torch.testing.assert_close(one_query(q, k, v), fused(q, k, v))
    assert gradcheck(lambda q, k, v: one_query(q, k, v, scale=0.5), (q, k, v))


def test_math_path_is_softmax_of_scaled_scores():
    q, k, v = torch.randn(1, 1, 3, D), torch.randn(1, 1, 4, D), torch.randn(1, 1, 4, D)
    out, w = attention_math(q, k, v)
    expected_w = torch.softmax(q[0, 0] @ k[0, 0].T / D**0.5, dim=-1)
    torch.testing.assert_close(w[0, 0], expected_w)
    torch.testing.assert_close(out[0, 0], expected_w @ v[0, 0])


def test_masked_keys_get_zero_weight():
    q, k, v = torch.randn(B, H, TQ, D), torch.randn(B, H, TK, D), torch.randn(B, H, TK, D)
    _, w = attention_math(q, k, v, masks(TQ, TK)["padding+causal"])
    assert torch.all(w[0, :, :, -2:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, TQ))


def test_unknown_impl_is_refused_by_name():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="'flash3'"):
        attention(q, q, q, impl="flash3")


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_attention_gradcheck_float64(impl):
    q, k, v = (torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = attention_mask(
        3, 3, causal=True, bias=ALiBi(2).score_bias(torch.arange(3), torch.arange(3))
    )
    assert gradcheck(lambda q, k, v: attention(q, k, v, mask.double(), impl=impl), (q, k, v))


def reference_mha(x, memory, wq, wk, wv, wo, n_heads, mask=None):
    """Multi-head attention from the paper's equations, head by head."""
    d_head = wq.size(0) // n_heads
    heads = []
    for h in range(n_heads):
        rows = slice(h * d_head, (h + 1) * d_head)
        q, k, v = x @ wq[rows].T, memory @ wk[rows].T, memory @ wv[rows].T
        scores = q @ k.transpose(-2, -1) / d_head**0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        heads.append(scores.softmax(-1) @ v)
    return torch.cat(heads, dim=-1) @ wo.T


def test_self_attention_matches_the_per_head_equations():
    d, n = 16, 4
    mha = SelfAttention(d, n, bias=False)
    wq, wk, wv = mha.qkv.weight.split(d)
    x = torch.randn(B, TQ, d)
    expected = reference_mha(x, x, wq, wk, wv, mha.out.weight, n, causal_mask(TQ))
    for impl in ("sdpa", "math"):  # given CAUSAL, each path applies the causal mask itself
        use_attention(mha, impl)
        out = mha(x, attention_mask(TQ, TQ, causal=True))
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_cross_attention_matches_the_per_head_equations():
    d, n = 16, 4
    mha = CrossAttention(d, n, bias=False)
    wk, wv = mha.kv.weight.split(d)
    x, memory = torch.randn(B, TQ, d), torch.randn(B, TK, d)
    expected = reference_mha(x, memory, mha.q.weight, wk, wv, mha.out.weight, n)
    torch.testing.assert_close(mha(x, memory), expected, atol=1e-6, rtol=1e-5)


def test_grouped_query_attention_equals_mha_with_repeated_kv_heads():
    d, n, n_kv = 16, 4, 2
    gqa = SelfAttention(d, n, n_kv_heads=n_kv)
    mha = SelfAttention(d, n)
    d_head = d // n
    wq, wk, wv = gqa.qkv.weight.split([d, n_kv * d_head, n_kv * d_head])
    bq, bk, bv = gqa.qkv.bias.split([d, n_kv * d_head, n_kv * d_head])

    def repeat(w):  # each kv head serves n // n_kv consecutive query heads
        return w.unflatten(0, (n_kv, d_head)).repeat_interleave(n // n_kv, 0).flatten(0, 1)

    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([wq, repeat(wk), repeat(wv)]))
        mha.qkv.bias.copy_(torch.cat([bq, repeat(bk), repeat(bv)]))
        mha.out.load_state_dict(gqa.out.state_dict())
    assert gqa.qkv.weight.shape[0] < mha.qkv.weight.shape[0]
    x = torch.randn(B, TQ, d)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
def test_multi_head_attention_gradcheck_float64(cross):
    d, n = 8, 2
    mha = (CrossAttention if cross else SelfAttention)(d, n, n_kv_heads=1).double()
    x = torch.randn(2, 3, d, dtype=torch.float64, requires_grad=True)
    m = torch.randn(2, 4, d, dtype=torch.float64, requires_grad=True)
    if cross:
        assert gradcheck(lambda x, m: mha(x, m), (x, m))
    else:
        assert gradcheck(lambda x: mha(x, attention_mask(3, 3, causal=True)), (x,))


def test_record_attention_returns_per_head_weights_and_same_output():
    d, n = 16, 4
    mha = SelfAttention(d, n)
    use_attention(mha, "sdpa")
    x = torch.randn(B, TQ, d)
    plain = mha(x)
    with record_attention(mha) as weights:
        recorded = mha(x)
    torch.testing.assert_close(plain, recorded, atol=1e-6, rtol=0)
    w = weights[""]
    assert w.shape == (B, n, TQ, TQ)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, n, TQ))
    assert mha.kernel is fused  # the kernel it had before


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_attention_dropout_only_in_training(impl):
    mha = SelfAttention(16, 4, dropout=0.5)
    use_attention(mha, impl)
    x = torch.randn(B, TQ, 16)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))

"""Decoding's state at the paper's seams (`aiayn.nn.seams`): beams sharing the memory, left
padding, a cache filled at the first use of each layer."""

import pytest
import torch

from aiayn.decode.cache import KVCache, LayerCache, RowPositions
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.nn.attention import CrossAttention
from aiayn.nn.masks import attention_mask
from aiayn.runtime.attention import use_attention
from tests.decode.conftest import tiny_config

B, TK = 2, 7


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("n_kv", [4, 2])
def test_query_rows_sharing_a_memory_row_equal_the_memory_repeated(impl, n_kv):
    # beam search: a sentence's g beams attend to its one row of the memory
    d, n, g, t = 16, 4, 3, 2
    mha = CrossAttention(d, n, n_kv_heads=n_kv)
    use_attention(mha, impl)
    x, memory = torch.randn(B * g, t, d), torch.randn(B, TK, d)
    pad = torch.zeros(B, TK, dtype=torch.bool)
    pad[0, -2:] = True  # the first sentence's last two keys are padding
    shared = mha(x, memory, attention_mask(t, TK, pad), LayerCache())
    repeated = mha(
        x, memory.repeat_interleave(g, 0), attention_mask(t, TK, pad.repeat_interleave(g, 0))
    )
    torch.testing.assert_close(shared, repeated, atol=1e-6, rtol=1e-5)


def test_query_rows_that_cannot_share_the_memory_rows_are_refused():
    mha = CrossAttention(16, 4)
    with pytest.raises(ValueError, match="5 query rows cannot share 2 memory rows"):
        mha(torch.randn(5, 1, 16), torch.randn(2, 3, 16), cache=LayerCache())


def test_the_memory_keys_are_computed_at_the_first_step_only():
    mha, cache = CrossAttention(16, 4), LayerCache()
    memory = torch.randn(B, TK, 16)
    first = mha(torch.randn(B, 1, 16), memory, cache=cache)
    kept = cache.memory_kv
    x = torch.randn(B, 1, 16)
    later = mha(x, torch.zeros_like(memory), cache=cache)  # the memory given is not read again
    assert cache.memory_kv is kept and first.shape == later.shape == (B, 1, 16)
    torch.testing.assert_close(later, mha(x, memory))


def test_row_positions_without_padding_are_the_papers_positions():
    torch.manual_seed(0)
    model = DecoderOnlyLM(tiny_config(arch="decoder_only", positional="sinusoidal")).eval()
    x = torch.randint(4, 16, (3, 9))
    with torch.no_grad():
        assert torch.equal(model(x, RowPositions()), model(x))
        cache = KVCache()
        steps = [model(x[:, :4], cache)] + [model(x[:, t : t + 1], cache) for t in range(4, 9)]
    assert len(cache.layers) == 2 and cache.length == 9  # a layer's cache at its first use
    torch.testing.assert_close(torch.cat(steps, 1), model(x))


def test_reorders_copy_into_the_buffers_the_last_one_left_and_keep_each_rows_keys():
    # a beam search's steps: append a position, keep some rows (each a parent), again and again;
    # the keys must be the chosen rows' whole history, as a plain gather of the history gives
    g = torch.Generator().manual_seed(0)
    cache, history = KVCache(), torch.empty(6, 2, 0, 4)
    layer = cache.layer(0)
    buffers = set()
    for step, rows in enumerate([6, 6, 5, 5, 3, 3]):
        new = torch.randn(history.size(0), 2, 1, 4, generator=g)
        k, v = layer.append(new, -new)
        history = torch.cat([history, new], 2)
        assert torch.equal(k, history) and torch.equal(v, -history)
        # after a reorder, the keys and values a step attends to are one block of memory
        assert step == 0 or (k.is_contiguous() and v.is_contiguous())
        index = torch.randint(0, history.size(0), (rows,), generator=g)
        cache.reorder_beams(index)
        history = history[index]
        assert torch.equal(layer.k[:, :, : layer.length], history)
        assert torch.equal(layer.v[:, :, : layer.length], -history)
        buffers.add(layer.k.untyped_storage().data_ptr())
    # one buffer is made for the first reorder; after it the two take turns
    assert len(buffers) == 2

"""The decoder's step with static shapes (`aiayn.decode.steps.GraphSteps`, which CUDA replays as
a graph) against the eager step over a growing cache: the same logits, rows and tokens, with
buffers that never move. On a CPU the static step runs eagerly; tests/test_gpu.py captures it."""

import pytest
import torch

from aiayn.decode.cache import KVCache
from aiayn.decode.search import greedy, n_best_search
from aiayn.decode.steps import EagerSteps, GraphSteps, decoder_steps
from tests.decode.conftest import SPECIAL, VOCAB, tiny_model


def test_greedy_over_the_static_step_gives_the_eager_tokens(model, sources):
    assert greedy(model, sources, SPECIAL, graph=True) == greedy(model, sources, SPECIAL)


def test_beam_search_over_the_static_step_gives_the_eager_n_best(model, sources):
    # sentences finish at different steps: the eager batch shrinks, the static one does not
    eager = n_best_search(model, sources, SPECIAL, beam=3, n_best=3)
    static = n_best_search(model, sources, SPECIAL, beam=3, n_best=3, graph=True)
    assert [[t for t, _ in hyps] for hyps in static] == [[t for t, _ in hyps] for hyps in eager]
    for hyps, others in zip(static, eager, strict=True):
        for (_, score), (_, other) in zip(hyps, others, strict=True):
            assert score == pytest.approx(other, abs=1e-5)


@torch.inference_mode()
def test_static_rows_follow_reorders_and_departures_as_the_eager_ones_in_fixed_buffers(
    model, sources
):
    """Random parents and departing sentences, as a search makes them: after each, the static
    step's logits for the rows searched are the eager step's, and no buffer has moved."""
    gen, beam = torch.Generator().manual_seed(0), 3
    src = sources[:6]
    memory, src_pad = model.encode(src)
    eager = EagerSteps(model, memory, src_pad, KVCache())
    static = GraphSteps(model, memory, src_pad, beam, capacity=12)
    tokens = torch.randint(4, VOCAB, (len(src) * beam, 1), generator=gen)
    pointers = None
    for t in range(10):
        expected, got = eager.logits(tokens), static.logits(tokens)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        layers = static.cache.layers
        now = [(c.k.data_ptr(), c.v.data_ptr()) for c in layers]
        assert pointers in (None, now)
        pointers = now
        n = len(tokens) // beam
        # each sentence's beams continue from its own rows; every third step one leaves
        rows = torch.arange(n)[:, None] * beam + torch.randint(0, beam, (n, beam), generator=gen)
        keep = torch.tensor([i for i in range(n) if i != t % n]) if t % 3 == 2 and n > 1 else None
        rows = rows if keep is None else rows[keep]
        eager.reorder(rows.view(-1), keep)
        static.reorder(rows.view(-1), keep)
        tokens = torch.randint(4, VOCAB, (rows.numel(), 1), generator=gen)


def test_static_steps_need_a_cache_and_learned_positions_up_to_the_capacity(trained, sources):
    memory, src_pad = trained.encode(sources[:2])
    with pytest.raises(ValueError, match="graph=True decodes over a static cache"):
        decoder_steps(trained, memory, src_pad, 1, 8, graph=True, use_cache=False)
    learned = tiny_model("learned").eval()
    limit = learned.cfg.max_len
    with pytest.raises(ValueError, match=f"beyond the learned encoding's max_len={limit}"):
        decoder_steps(learned, *learned.encode(sources[:2]), 1, limit + 1, graph=True)

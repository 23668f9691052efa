import math

import pytest
import torch

from aiayn.decode.cache import KVCache, RowPositions
from aiayn.decode.sample import filter_logits, generate, next_token
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.nn.positional import POSITIONAL
from tests.decode.conftest import tiny_config


def lm(positional: str = "rope", max_len: int = 64) -> DecoderOnlyLM:
    torch.manual_seed(0)
    cfg = tiny_config(arch="decoder_only", vocab_size=23, positional=positional, max_len=max_len)
    return DecoderOnlyLM(cfg).eval()


def run(model, prompt, n, **kw) -> torch.Tensor:
    return torch.stack(list(generate(model, prompt, n, **kw)), dim=1)


def test_top_p_keeps_the_smallest_set_that_reaches_p() -> None:
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].nonzero()[:, 0].tolist()  # noqa: E731
    assert kept(0.4) == [1]  # 0.4 alone reaches 0.4
    assert kept(0.41) == [1, 3]
    assert kept(0.7) == [1, 3]  # 0.4 + 0.3 reaches 0.7
    assert kept(0.71) == [1, 3, 4]
    assert kept(0.95) == [1, 2, 3, 4]
    assert kept(0.96) == [0, 1, 2, 3, 4]
    renormalised = filter_logits(logits, top_p=0.8).softmax(-1)[0]
    assert math.isclose(renormalised[1].item(), 0.4 / 0.85, rel_tol=1e-6)


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))[0]
    assert kept.tolist() == [False, True, False, True, False]
    assert torch.isfinite(filter_logits(logits, top_k=99)).all()


def test_top_k_1_sampling_equals_greedy() -> None:
    model = lm()
    prompt = torch.tensor([[3, 7, 1], [4, 4, 9]])
    greedy = run(model, prompt, 30, temperature=0.0)
    sampled = run(model, prompt, 30, temperature=1.3, top_k=1)
    assert torch.equal(greedy, sampled)


def test_same_seed_same_text_other_seed_other_text() -> None:
    model = lm()
    prompt = torch.tensor([[5]])

    def sample(seed):
        return run(
            model, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(sample(7), sample(7))
    assert not torch.equal(sample(7), sample(8))


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope", "alibi"])
def test_cache_gives_the_same_tokens_as_recomputing(positional: str) -> None:
    model = lm(positional)
    prompt = torch.tensor([[3, 7, 1, 12]])
    cached = run(model, prompt, 25, temperature=0.0)
    full = run(model, prompt, 25, temperature=0.0, use_cache=False)
    assert torch.equal(cached, full)


def test_past_the_context_the_cache_is_rebuilt_from_the_recent_half() -> None:
    model = lm("learned", max_len=16)  # learned positions: nothing beyond 16 exists
    out = run(model, torch.tensor([[2, 3]]), 60, temperature=0.0)
    assert out.shape == (1, 60)
    # The first 14 tokens fit in the window, so they are exactly recomputation's.
    full = run(model, torch.tensor([[2, 3]]), 14, temperature=0.0, use_cache=False)
    assert torch.equal(out[:, :14], full)


def test_next_token_samples_by_probability() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]]).expand(4000, 2)
    picks = next_token(logits, generator=torch.Generator().manual_seed(0))
    assert abs(picks.float().mean().item() - 0.75) < 0.03


@pytest.mark.parametrize("top_k, top_p", [(0, 0.0), (0, 1e-9), (1, 0.0)])
def test_the_filters_always_keep_the_most_likely_token(top_k, top_p) -> None:
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.9]])
    kept = filter_logits(logits, top_k, top_p)
    assert kept.isfinite().tolist() == [[False, True, False, False]]
    assert next_token(logits, 1.0, top_k, top_p).tolist() == [1]


@pytest.mark.parametrize("positional", sorted(POSITIONAL))
def test_a_prompt_alone_and_inside_a_left_padded_batch_give_the_same_tokens(positional) -> None:
    model = lm(positional).double()
    g = torch.Generator().manual_seed(3)
    lengths = [9, 3, 14, 1, 6, 11, 2, 7]
    width = max(lengths) + 4  # every row padded, the longest too
    batch = torch.zeros(len(lengths), width, dtype=torch.long)  # 0: padding
    prompts = [torch.randint(4, 23, (n,), generator=g) for n in lengths]
    for row, p in enumerate(prompts):
        batch[row, width - len(p) :] = p
    together = run(model, batch, 12, temperature=0.0, pad_mask=batch == 0)
    for row, p in enumerate(prompts):
        alone = run(model, p[None], 12, temperature=0.0)
        assert together[row].tolist() == alone[0].tolist(), (positional, row)
    with torch.no_grad():  # and the logits of the real positions agree, not only their argmax
        logits = model(batch, RowPositions(), pad_mask=batch == 0)
        for row, p in enumerate(prompts):
            torch.testing.assert_close(logits[row, width - len(p) :], model(p[None])[0])


def test_a_sliding_window_hides_keys_beyond_it() -> None:
    torch.manual_seed(0)
    cfg = tiny_config(arch="decoder_only", vocab_size=23, positional="rope", attn_window=4)
    model = DecoderOnlyLM(cfg).eval()
    x = torch.randint(4, 23, (1, 10))
    changed = x.clone()
    changed[0, 0] = (x[0, 0] + 1 - 4) % 19 + 4  # a different token, 9 positions back
    with torch.no_grad():
        # positions 0-3 see the changed token; from position 4 (window 4) it is out of sight
        # in the first layer, but reaches position 4-6 through the second layer's keys
        a, b = model(x)[0], model(changed)[0]
    assert not torch.allclose(a[:3], b[:3])
    torch.testing.assert_close(a[7:], b[7:])  # 2 layers x 3 positions of reach
    cached = KVCache()
    steps = [model(x[:, :5], cached)[0]] + [model(x[:, t : t + 1], cached)[0] for t in range(5, 10)]
    torch.testing.assert_close(torch.cat(steps), a)  # the cache applies the same window


def step_logits(model, prompt, n, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens (B, n) and the logits (B, n, V) each was chosen from."""
    seen = []
    hook = model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out[:, -1]))
    try:
        tokens = run(model, prompt, n, **kw)
    finally:
        hook.remove()
    return tokens, torch.stack(seen, dim=1)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope", "alibi"])
def test_past_the_context_each_row_of_a_batch_is_rebuilt_as_it_would_be_alone(positional) -> None:
    """The cache is rebuilt when a row's own tokens fill the context, not the padded width:
    a short prompt batched with long ones continues as it does alone, past max_len."""
    model = lm(positional, max_len=16).double()
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(4, 23, (n,), generator=g) for n in (2, 13, 20, 7)]
    width = max(map(len, prompts)) + 1  # every row padded, the longest too
    batch = torch.zeros(len(prompts), width, dtype=torch.long)  # 0: padding
    for row, p in enumerate(prompts):
        batch[row, width - len(p) :] = p
    together, logits = step_logits(model, batch, 40, temperature=0.0, pad_mask=batch == 0)
    for row, p in enumerate(prompts):
        alone, alone_logits = step_logits(model, p[None], 40, temperature=0.0)
        assert together[row].tolist() == alone[0].tolist(), (positional, row)
        torch.testing.assert_close(logits[row], alone_logits[0], msg=f"{positional}, row {row}")

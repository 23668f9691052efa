"""A language model's generation over static buffers (graph=True: `LMGraphSteps`, which CUDA
replays as a graph; eagerly on a CPU) against the growing cache: the same tokens and logits for
left-padded batches, every kind of positions, a sliding window, a rebuilt context and
sampling, with buffers that never move. tests/test_gpu.py captures it."""

import pytest
import torch

from aiayn.decode.sample import generate
from aiayn.decode.steps import LMGraphSteps
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.nn.positional import POSITIONAL
from tests.decode.conftest import tiny_config
from tests.decode.test_sample import lm, run, step_logits


def padded_batch(lengths: list[int], seed: int) -> torch.Tensor:
    """Prompts of `lengths`, left-padded with 0 to one more than the longest."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths) + 1, dtype=torch.long)
    for row, n in enumerate(lengths):
        batch[row, batch.size(1) - n :] = torch.randint(4, 23, (n,), generator=g)
    return batch


def assert_same_steps(model: DecoderOnlyLM, prompt: torch.Tensor, n: int, **kw) -> None:
    tokens, logits = step_logits(model, prompt, n, **kw)
    graph_tokens, graph_logits = step_logits(model, prompt, n, graph=True, **kw)
    assert graph_tokens.tolist() == tokens.tolist()
    torch.testing.assert_close(graph_logits, logits)


@pytest.mark.parametrize("positional", sorted(POSITIONAL))
def test_a_left_padded_batch_gives_the_growing_caches_tokens_and_logits(positional):
    batch = padded_batch([9, 3, 14, 1, 6], seed=3)
    assert_same_steps(lm(positional).double(), batch, 12, temperature=0.0, pad_mask=batch == 0)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope", "alibi"])
def test_past_the_context_the_rebuilt_buffers_give_the_growing_caches_tokens(positional):
    batch = padded_batch([2, 13, 20, 7], seed=5)  # max_len 16: every row's context is rebuilt
    model = lm(positional, max_len=16).double()
    assert_same_steps(model, batch, 40, temperature=0.0, pad_mask=batch == 0)


def test_a_sliding_window_and_grouped_query_attention():
    torch.manual_seed(0)
    cfg = tiny_config(
        arch="decoder_only", vocab_size=23, positional="rope", attn_window=4, n_kv_heads=2,
        norm="rmsnorm", activation="swiglu", bias=False,
    )  # fmt: skip
    batch = padded_batch([5, 2, 8], seed=7)
    model = DecoderOnlyLM(cfg).eval().double()
    assert_same_steps(model, batch, 20, temperature=0.0, pad_mask=batch == 0)


def test_sampling_with_a_seed_gives_the_same_tokens():
    model, prompt = lm("rope"), torch.tensor([[3, 7, 1, 12], [4, 4, 9, 2]])

    def sample(graph: bool) -> list:
        g = torch.Generator().manual_seed(11)
        kw = dict(temperature=0.9, top_k=10, top_p=0.95, generator=g, graph=graph)
        return run(model, prompt, 30, **kw).tolist()

    assert sample(True) == sample(False)


@torch.inference_mode()
def test_the_buffers_never_move_and_a_cache_is_needed():
    model, prompt = lm("alibi"), padded_batch([4, 2], seed=1)
    steps = LMGraphSteps(model, 2, capacity=12, device=torch.device("cpu"))
    steps.logits(prompt, prompt == 0)
    layers = steps.cache.layers
    before = [(c.k.data_ptr(), c.v.data_ptr()) for c in layers]
    for t in range(6):
        steps.logits(torch.full((2, 1), 5 + t), None)
    assert [(c.k.data_ptr(), c.v.data_ptr()) for c in layers] == before
    assert steps.length == prompt.size(1) + 6 and steps.key_pad.shape == (2, steps.length)
    with pytest.raises(ValueError, match="graph=True decodes over a static cache"):
        next(generate(model, prompt, 3, graph=True, use_cache=False))

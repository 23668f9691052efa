"""The static-shape step (graph=True; eager on a CPU) against the eager one (graph=False) over
more kinds of model and the searches' edge cases: sentences leaving at the first step, caps
below the sources and of one token, a batch of one, several sentences leaving at once, and a
model imported from transformers' Marian."""

import pytest
import torch

from aiayn.decode.cache import KVCache
from aiayn.decode.search import greedy, n_best_search
from aiayn.decode.steps import EagerSteps, GraphSteps
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.runtime.attention import use_attention
from tests.decode.conftest import SPECIAL, VOCAB, reversal_batch, tiny_config

KINDS = {
    "post-norm": dict(norm_first=False),
    "gqa-rope": dict(positional="rope", n_kv_heads=2),
    "gqa-alibi": dict(positional="alibi", n_kv_heads=1),
    "learned-small": dict(positional="learned", max_len=64),
    "rms-swiglu-headdim": dict(norm="rmsnorm", activation="swiglu", head_dim=12, n_kv_heads=2),
    "no-bias-unscaled": dict(bias=False, scale_embeddings=False, scale_scores=False),
    "three-decoder-layers": dict(n_decoder_layers=3, share_embeddings=False, tie_output=False),
}


def build(kind: str, eos_bias: float = 0.0, sdpa: bool = False) -> EncoderDecoder:
    torch.manual_seed(11)
    model = EncoderDecoder(tiny_config(output_bias=True, **KINDS[kind])).eval()
    with torch.no_grad():
        model.generator.bias.zero_()
        model.generator.bias[SPECIAL.eos] = eos_bias  # sentences end at assorted steps
    if sdpa:
        use_attention(model, "sdpa")
    return model


def sources(n: int, seed: int = 5) -> torch.Tensor:
    return reversal_batch(torch.Generator().manual_seed(seed), n)[0]


def assert_same(graph, eager):
    assert [[t for t, _ in h] for h in graph] == [[t for t, _ in h] for h in eager]
    for hyps, others in zip(graph, eager, strict=True):
        for (_, s), (_, o) in zip(hyps, others, strict=True):
            assert s == pytest.approx(o, abs=1e-4)


@pytest.mark.parametrize("sdpa", [False, True], ids=["math", "sdpa"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kinds_greedy_and_n_best(kind, sdpa):
    model, src = build(kind, eos_bias=2.0, sdpa=sdpa), sources(12)
    assert greedy(model, src, SPECIAL, graph=True) == greedy(model, src, SPECIAL)
    for beam, n_best in [(1, 1), (2, 2), (4, 3)]:
        kw = dict(beam=beam, n_best=n_best, max_extra=6)
        assert_same(
            n_best_search(model, src, SPECIAL, graph=True, **kw),
            n_best_search(model, src, SPECIAL, **kw),
        )


@pytest.mark.parametrize("eos_bias", [0.0, 1.5, 3.0, 6.0])
@pytest.mark.parametrize("beam", [2, 3, 5, 10])
def test_departures_at_assorted_steps_including_the_first(eos_bias, beam):
    """Short sources (one token: limit 1 with max_extra 0) leave at t = 0, others later;
    with a large EOS bias whole sentences finish with beams at the very first step."""
    model = build("post-norm", eos_bias)
    src = sources(9, seed=7)
    src[0, 1:] = SPECIAL.pad  # a one-token source
    src[4, 1:] = SPECIAL.pad
    src[0, 0] = src[4, 0] = SPECIAL.eos
    for max_extra in (0, 1, 3):
        kw = dict(beam=beam, n_best=min(beam, 3), max_extra=max_extra)
        assert_same(
            n_best_search(model, src, SPECIAL, graph=True, **kw),
            n_best_search(model, src, SPECIAL, **kw),
        )


@pytest.mark.parametrize("cap", [1, 2, 3])
@pytest.mark.parametrize("beam", [1, 3])
def test_caps_below_the_sources_and_a_cap_of_one(cap, beam):
    model, src = build("gqa-rope", 1.0), sources(6)
    if beam == 1:
        assert greedy(model, src, SPECIAL, cap=cap, graph=True) == greedy(
            model, src, SPECIAL, cap=cap
        )
    kw = dict(beam=beam, n_best=beam, cap=cap)
    assert_same(
        n_best_search(model, src, SPECIAL, graph=True, **kw),
        n_best_search(model, src, SPECIAL, **kw),
    )


@pytest.mark.parametrize("kind", ["learned-small", "gqa-alibi"])
def test_a_batch_of_one_sentence(kind):
    model = build(kind, 1.0)
    src = sources(3)[1:2]
    assert greedy(model, src, SPECIAL, graph=True) == greedy(model, src, SPECIAL)
    for beam in (1, 4):
        kw = dict(beam=beam, n_best=beam)
        assert_same(
            n_best_search(model, src, SPECIAL, graph=True, **kw),
            n_best_search(model, src, SPECIAL, **kw),
        )


@torch.inference_mode()
@pytest.mark.parametrize("kind", ["post-norm", "gqa-rope", "gqa-alibi"])
def test_reorder_with_several_departures_at_once(kind):
    """Beams permuted across all of a sentence's rows while the first, the last and a middle
    sentence leave together, at the first reorder and again later."""
    model, beam = build(kind), 3
    src = sources(7)
    memory, src_pad = model.encode(src)
    eager = EagerSteps(model, memory, src_pad, KVCache())
    static = GraphSteps(model, memory, src_pad, beam, capacity=8)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, VOCAB, (len(src) * beam, 1), generator=gen)
    plans = {0: [1, 2, 4, 5], 3: [1, 3], 5: [0]}  # keep, in the numbering of that step
    n = len(src)
    for t in range(7):
        torch.testing.assert_close(static.logits(tokens), eager.logits(tokens), atol=1e-5, rtol=0)
        rows = torch.arange(n)[:, None] * beam + torch.stack(
            [torch.randperm(beam, generator=gen) for _ in range(n)]
        )
        rows[:, 0] = rows[:, 1]  # two beams from one parent
        keep = torch.tensor(plans[t]) if t in plans else None
        if keep is not None:
            rows, n = rows[keep], len(keep)
        eager.reorder(rows.view(-1), keep)
        static.reorder(rows.view(-1), keep)
        tokens = torch.randint(4, VOCAB, (n * beam, 1), generator=gen)


def test_marian_imported_model(tmp_path):
    import transformers

    from aiayn.decode.search import Special
    from aiayn.interop.hf import from_pretrained

    torch.manual_seed(2)
    pad = 95
    cfg = transformers.MarianConfig(
        vocab_size=96, d_model=48, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96,
        decoder_ffn_dim=96, activation_function="swish", scale_embedding=True,
        max_position_embeddings=64, pad_token_id=pad, decoder_start_token_id=pad,
        eos_token_id=0, forced_eos_token_id=None,
    )  # fmt: skip
    hf = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_(std=0.5)
        hf.final_logits_bias[0, 0] += 2.0  # </s> now and then
    hf.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path).eval()
    gen = torch.Generator().manual_seed(3)
    src = torch.randint(2, 90, (5, 9), generator=gen)
    src[:, -1] = 0
    src[1, 4:] = pad
    src[1, 3] = 0
    special = Special(bos=pad, eos=0, pad=pad)
    assert greedy(ours, src, special, cap=20, graph=True) == greedy(ours, src, special, cap=20)
    kw = dict(beam=4, n_best=2, cap=20)
    assert_same(
        n_best_search(ours, src, special, graph=True, **kw),
        n_best_search(ours, src, special, **kw),
    )

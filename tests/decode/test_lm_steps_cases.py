"""A language model's static-buffer generation (graph=True) against the growing cache over
the edge cases: prompts of one token or past max_len, contexts rebuilt many times, sliding
windows with grouped-query attention, sampling with banned tokens and `on_probs`, models
imported from transformers, text streams with stop strings; with the CUDA path's calls
emulated on a CPU (warm-up, capture and replay at the first replayed step) and every op of the
captured step checked for what a CUDA graph's capture forbids (`CaptureRules`: it cannot see
a copy from the host, which on a CPU is none). Also: the static states are freed as soon as
they are dropped, and `positions` is idempotent, as a capture needs."""

from __future__ import annotations

import gc
import traceback
import weakref

import pytest
import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode

import aiayn.decode.replay as replay_mod
import aiayn.decode.sample as sample_mod
from aiayn.data.tokenizer import train_chars
from aiayn.decode.sample import generate
from aiayn.decode.search import greedy, n_best_search
from aiayn.decode.static import StaticCache, StaticRows
from aiayn.decode.steps import GraphSteps, LMGraphSteps
from aiayn.decode.text import generate as generate_text
from aiayn.decode.text import stream
from aiayn.interop.hf import from_pretrained
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.nn.positional import POSITIONAL
from tests.decode.conftest import SPECIAL, tiny_config
from tests.decode.test_lm_steps import padded_batch
from tests.interop.conftest import PAD, save
from tests.interop.test_hf_llama import FAMILIES, FOR_CAUSAL_LM

aten = torch.ops.aten
# what a CUDA graph's capture cannot hold: a read back to the host, a shape that depends on
# data, a tensor made from Python data (a copy from the host on CUDA)
FORBIDDEN = {
    aten._local_scalar_dense.default,
    aten.item.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.lift_fresh.default,
    aten.lift_fresh_copy.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.repeat_interleave.Tensor,
    aten._unique2.default,
}


class CaptureRules(TorchDispatchMode):
    """Records every forbidden op run inside it, with the aiayn frame that ran it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        bool_index = func is aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        )
        if func in FORBIDDEN or bool_index:
            frames = [f for f in traceback.extract_stack() if "/aiayn/" in f.filename]
            frames = frames or traceback.extract_stack()[:-1]
            where = f"{frames[-1].filename.split('/src/')[-1]}:{frames[-1].lineno}"
            # Learned.embed skips its host-side check while a CUDA graph captures
            # (positions.is_cuda and capturing); on a CPU it cannot know it is "capturing"
            if not any(f.name == "embed" and "positional.py" in f.filename for f in frames):
                self.seen.append(f"{func} at {where}")
        return func(*args, **kwargs)


@pytest.fixture(params=["cpu", "cuda-like"])
def emulate(request, monkeypatch):
    """ "cuda-like": Replayed runs its step as CUDA would: at the first call a warm-up, a
    capture (checked for what capture forbids) and a replay, then once a call."""
    found: list[str] = []
    if request.param == "cuda-like":

        def call(self):
            if self.graph is None:
                self.forward()  # warm-up
                with CaptureRules() as rules:
                    self.out = self.forward()  # "capture"
                found.extend(rules.seen)
                self.graph = True
            return self.forward()  # replay

        monkeypatch.setattr(replay_mod.Replayed, "__call__", call)
    yield found
    assert not found, found


def lm(positional="rope", max_len=64, **kw) -> DecoderOnlyLM:
    torch.manual_seed(0)
    cfg = tiny_config(
        arch="decoder_only", vocab_size=23, positional=positional, max_len=max_len, **kw
    )
    return DecoderOnlyLM(cfg).eval().double()


def step_logits(model, prompt, n, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens (B, n) and the logits (B, n, V) each was chosen from (as `next_token` got
    them: the model's, once per step however often the step ran)."""
    seen = []
    chosen = sample_mod.next_token

    def spy(logits, *a, **k):
        seen.append(logits.clone())
        return chosen(logits, *a, **k)

    sample_mod.next_token = spy
    try:
        tokens = torch.stack(list(generate(model, prompt, n, **kw)), dim=1)
    finally:
        sample_mod.next_token = chosen
    return tokens, torch.stack(seen, dim=1)


def same(model, prompt, n, **kw) -> None:
    if n == 0:
        assert list(generate(model, prompt, 0, graph=True, **kw)) == []
        return
    tokens, logits = step_logits(model, prompt, n, **kw)
    graph_tokens, graph_logits = step_logits(model, prompt, n, graph=True, **kw)
    assert graph_tokens.tolist() == tokens.tolist()
    torch.testing.assert_close(graph_logits, logits)


GREEDY = dict(temperature=0.0)
KINDS = sorted(POSITIONAL)


@pytest.mark.parametrize("positional", KINDS)
def test_very_different_lengths(positional, emulate):
    batch = padded_batch([1, 30, 5, 2], seed=1)
    same(lm(positional), batch, 10, pad_mask=batch == 0, **GREEDY)


@pytest.mark.parametrize("positional", KINDS)
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_one_token_prompts(positional, n, emulate):
    same(lm(positional), torch.tensor([[5]]), n, **GREEDY)  # the first step is replayed
    same(lm(positional), torch.tensor([[5], [9], [4]]), n, **GREEDY)
    batch = padded_batch([1, 1], seed=2)  # one token each, after a column of padding
    same(lm(positional), batch, n, pad_mask=batch == 0, **GREEDY)


@pytest.mark.parametrize("positional", KINDS)
@pytest.mark.parametrize("n", [0, 1, 2])
def test_few_new_tokens(positional, n, emulate):
    batch = padded_batch([6, 3, 9], seed=3)
    same(lm(positional), batch, n, pad_mask=batch == 0, **GREEDY)
    same(lm(positional), batch[:, 1:], n, **GREEDY)


@pytest.mark.parametrize("positional", KINDS)
@pytest.mark.parametrize("width", [16, 40])
@pytest.mark.parametrize("n", [2, 30])
def test_prompts_at_and_past_max_len(positional, width, n, emulate):
    g = torch.Generator().manual_seed(width)
    full = torch.randint(4, 23, (2, width), generator=g)
    same(lm(positional, max_len=16), full, n, **GREEDY)
    batch = padded_batch([width - 1, 3], seed=width)[:, 1:]  # width columns, padded
    same(lm(positional, max_len=16), batch, n, pad_mask=batch == 0, **GREEDY)


@pytest.mark.parametrize("positional", KINDS)
@pytest.mark.parametrize("max_len", [2, 5])
def test_contexts_rebuilt_many_times(positional, max_len, emulate):
    batch = padded_batch([1, 4, 2], seed=max_len)
    same(lm(positional, max_len=max_len), batch, 45, pad_mask=batch == 0, **GREEDY)
    same(lm(positional, max_len=max_len), torch.tensor([[7]]), 45, **GREEDY)


@pytest.mark.parametrize("positional", ["rope", "alibi", "learned", "sinusoidal"])
@pytest.mark.parametrize("window", [1, 3, 40])
@pytest.mark.parametrize("kv_heads", [None, 1])
def test_windows_and_grouped_query_attention(positional, window, kv_heads, emulate):
    model = lm(positional, max_len=20, attn_window=window, n_kv_heads=kv_heads)
    batch = padded_batch([9, 2, 15], seed=window)
    same(model, batch, 30, pad_mask=batch == 0, **GREEDY)


@pytest.mark.parametrize("positional", ["rope", "alibi", "learned"])
def test_sampling_banned_and_on_probs(positional, emulate):
    model = lm(positional, max_len=12)
    batch = padded_batch([7, 2, 11], seed=4)

    def go(graph):
        probs = []
        kw = dict(
            temperature=0.9, top_k=8, top_p=0.9, banned=[4, 5, 6],
            generator=torch.Generator().manual_seed(3), pad_mask=batch == 0,
            on_probs=probs.append, graph=graph,
        )  # fmt: skip
        tokens = torch.stack(list(generate(model, batch, 40, **kw)), 1)
        return tokens, torch.stack(probs, 1)

    (t, p), (gt, gp) = go(False), go(True)
    assert gt.tolist() == t.tolist() and not set(t.flatten().tolist()) & {4, 5, 6}
    torch.testing.assert_close(gp, p)


def hf_model(kind: str, max_len: int):
    torch.manual_seed(7)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=PAD + 1, n_embd=48, n_layer=2, n_head=4, n_positions=max_len,
            bos_token_id=None, eos_token_id=None,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = FAMILIES[kind]()
    cfg.max_position_embeddings = max_len
    hf = FOR_CAUSAL_LM[kind](cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    return hf


@pytest.mark.parametrize("kind", ["gpt2", "llama", "mistral", "qwen2"])
@pytest.mark.parametrize("max_len", [20, 128])
def test_imported_models(kind, max_len, tmp_path, emulate):
    ours = from_pretrained(save(hf_model(kind, max_len), tmp_path)).double()
    g = torch.Generator().manual_seed(1)
    ids = torch.full((4, 13), PAD)
    for row, n in enumerate([13, 4, 8, 1]):
        ids[row, 13 - n :] = torch.randint(0, PAD, (n,), generator=g)
    same(ours, ids, 50, pad_mask=ids == PAD, **GREEDY)
    same(ours, ids[3:, -1:], 30, **GREEDY)


TOK = train_chars(["abcdefgh ijklmnop\n"])


@pytest.mark.parametrize("stop", [[], ["ab"], ["a", "mmm", "p o"]])
@pytest.mark.parametrize("seed", [None, 5])
def test_text_stream_with_stop_strings(stop, seed, emulate):
    torch.manual_seed(0)
    cfg = tiny_config(arch="decoder_only", vocab_size=TOK.vocab_size, positional="rope", max_len=9)
    model = DecoderOnlyLM(cfg).eval()
    prompts = ["abc", "h", "ponm lk ijk", "a b"]
    temperature = 0.0 if seed is None else 1.0

    def go(graph):
        return list(stream(model, TOK, prompts, 30, temperature, 0, 0.9, stop, seed, None, graph))

    assert go(True) == go(False)
    texts = [generate_text(model, TOK, prompts, 30, temperature, 0, 0.9, stop, seed, graph=g)
             for g in (True, False)]  # fmt: skip
    assert texts[0] == texts[1]


# -- state -----------------------------------------------------------------------------------


@torch.inference_mode()
def test_positions_is_idempotent_warm_up_capture_replay_equal_one_step():
    """The state after warm-up + capture + replay of a step equals that after one step."""
    model, batch = lm("alibi", attn_window=5), padded_batch([6, 2, 9], seed=8)
    once = LMGraphSteps(model, 3, 20, torch.device("cpu"))
    thrice = LMGraphSteps(model, 3, 20, torch.device("cpu"))
    for steps in (once, thrice):
        steps.logits(batch, batch == 0)
    for t in range(6):
        tok = torch.full((3, 1), 4 + t)
        a = once.logits(tok, None)
        thrice.tokens.copy_(tok)
        thrice.step.forward(), thrice.step.forward()
        b = thrice.logits(tok, None)
        torch.testing.assert_close(a, b)
    for name in ("seen", "key_pad", "key_pos", "col"):
        assert torch.equal(getattr(once.cache, name), getattr(thrice.cache, name)), name
    for la, lb in zip(once.cache.layers, thrice.cache.layers, strict=True):
        assert torch.equal(la.k, lb.k) and torch.equal(la.v, lb.v)


def test_a_dropped_lm_graph_steps_is_freed_without_the_cycle_collector():
    """Its buffers (and on CUDA the graph's private pool) should go when it is dropped, as
    a KVCache's do; reference cycles keep them until the cyclic GC runs."""
    model, batch = lm("rope"), padded_batch([4, 2], seed=1)
    gc.collect()
    gc.disable()
    try:
        with torch.inference_mode():
            steps = LMGraphSteps(model, 2, 12, torch.device("cpu"))
            steps.logits(batch, batch == 0)
            steps.logits(torch.full((2, 1), 5), None)
        k = weakref.ref(steps.cache.layers[0].k)
        ref, rows = weakref.ref(steps), weakref.ref(steps.cache)
        del steps
        alive = [
            name
            for name, r in (("LMGraphSteps", ref), ("StaticRows", rows), ("k", k))
            if r() is not None
        ]
        assert not alive, f"still alive after del (cycles): {alive}"
    finally:
        gc.enable()


def test_refills_keep_every_old_context_alive_until_the_cycle_collector_runs(monkeypatch):
    made = []
    init = StaticRows.__init__
    monkeypatch.setattr(
        StaticRows, "__init__", lambda s, *a: made.append(weakref.ref(s)) or init(s, *a)
    )
    model, batch = lm("rope", max_len=8), padded_batch([3, 5], seed=2)
    gc.collect()
    gc.disable()
    try:
        live = []
        for _ in generate(model, batch, 40, temperature=0.0, pad_mask=batch == 0, graph=True):
            live.append(sum(r() is not None for r in made))
        assert max(live) == 1, f"StaticRows alive at each step: {live}"
    finally:
        gc.enable()


def test_a_dropped_graph_steps_is_freed_without_the_cycle_collector(trained, sources):
    gc.collect()
    gc.disable()
    try:
        with torch.inference_mode():
            memory, src_pad = trained.encode(sources[:3])
            steps = GraphSteps(trained, memory, src_pad, beam=1, capacity=6)
            steps.logits(torch.ones(3, 1, dtype=torch.long))
            steps.logits(torch.ones(3, 1, dtype=torch.long))
        ref, cache = weakref.ref(steps), weakref.ref(steps.cache)
        assert isinstance(cache(), StaticCache)
        del steps
        alive = [
            name for name, r in (("GraphSteps", ref), ("StaticCache", cache)) if r() is not None
        ]
        assert not alive, f"still alive after del (cycles): {alive}"
    finally:
        gc.enable()


# -- memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_capacity_for_a_huge_max_len(kind, tmp_path, monkeypatch):
    ours = from_pretrained(save(hf_model(kind, 65536), tmp_path))
    made = []
    init = LMGraphSteps.__init__
    monkeypatch.setattr(
        LMGraphSteps, "__init__", lambda s, m, r, c, d: made.append(c) or init(s, m, r, c, d)
    )
    ids = torch.randint(0, PAD, (2, 9))
    for n in (0, 1, 2, 20):
        list(generate(ours, ids, n, temperature=0.0, graph=True))
    assert made == [8, 9, 10, 28]


def test_the_encoder_decoders_searches_under_the_capture_rules(model, sources, emulate):
    """Greedy and beam search (every kind of positions of the `model` fixture) replayed as
    CUDA would, with the same tokens as eager and nothing the capture forbids."""
    assert greedy(model, sources, SPECIAL, graph=True) == greedy(model, sources, SPECIAL)
    eager = n_best_search(model, sources, SPECIAL, beam=3, n_best=2)
    graphed = n_best_search(model, sources, SPECIAL, beam=3, n_best=2, graph=True)
    assert [[t for t, _ in h] for h in graphed] == [[t for t, _ in h] for h in eager]

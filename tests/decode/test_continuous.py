"""Continuous batching: sequences joining and leaving a running batch decode as each alone."""

import torch

import aiayn
from aiayn.decode.continuous import RunningBatch, Sampling
from aiayn.models.decoder_only import DecoderOnlyLM
from tests.decode.conftest import tiny_config
from tests.decode.test_text import TOK


def lm(positional: str) -> DecoderOnlyLM:
    torch.manual_seed(0)
    cfg = tiny_config(
        arch="decoder_only", vocab_size=TOK.vocab_size, positional=positional, max_len=16
    )
    return DecoderOnlyLM(cfg).eval()


def run(batch: RunningBatch, arrivals: dict[int, list[tuple[str, Sampling]]]) -> list[str]:
    """Each prompt added at the step its arrival names; the texts in order of arrival."""
    texts, step = {}, 0  # by sequence, in order of arrival
    while step == 0 or len(batch) or any(k >= step for k in arrivals):
        for prompt, sampling in arrivals.get(step, []):
            seq = batch.add(TOK.encode_prompts([prompt])[0], sampling)
            texts[seq] = ""
        for seq, piece in batch.step() if len(batch) else []:
            texts[seq] += piece
        step += 1
    return list(texts.values())


def test_sequences_joining_and_leaving_give_what_each_gives_alone() -> None:
    """Greedy and seeded rows of different lengths join at different steps; the long ones
    pass the model's context (max_len 16), so each is read again from its last half."""
    for positional in ("rope", "learned"):
        model = lm(positional)
        greedy = Sampling(max_tokens=24, temperature=0.0)
        arrivals = {
            0: [("abc", greedy)],
            3: [("ponm lk", Sampling(max_tokens=5, temperature=0.0))],
            7: [("h", Sampling(max_tokens=20, temperature=1.0, top_k=5, seed=3)), ("a b", greedy)],
            12: [("abcdefgh " * 3, Sampling(max_tokens=10, temperature=0.0))],
        }
        got = run(RunningBatch(model, TOK), arrivals)
        alone = [
            aiayn.generate(model, TOK, p, s.max_tokens, s.temperature, s.top_k, seed=s.seed)
            for step in sorted(arrivals)
            for p, s in arrivals[step]
        ]
        assert got == alone
        assert [len(t) for t in got] == [24, 5, 20, 24, 10]

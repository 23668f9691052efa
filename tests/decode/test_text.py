"""`aiayn.generate` and `aiayn.stream`: prompts in, continuations out."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aiayn
from aiayn.data.tokenizer import train_chars
from aiayn.decode.sample import filter_logits
from aiayn.models import DecoderOnlyLM
from tests.decode.conftest import tiny_config

TOK = train_chars(["abcdefgh ijklmnop\n"])
PROMPTS = ["abc", "h", "ponm lk", "a b"]


def lm(output_bias: bool = False) -> DecoderOnlyLM:
    torch.manual_seed(0)
    cfg = tiny_config(
        arch="decoder_only", vocab_size=TOK.vocab_size, positional="rope", output_bias=output_bias
    )
    return DecoderOnlyLM(cfg).eval()


def test_a_batch_of_prompts_gives_what_each_gives_alone() -> None:
    model = lm()
    together = aiayn.generate(model, TOK, PROMPTS, max_new_tokens=15, temperature=0.0)
    assert together == [aiayn.generate(model, TOK, p, 15, temperature=0.0) for p in PROMPTS]
    assert all(len(t) == 15 for t in together)  # a character each, no special token
    sampled = aiayn.generate(model, TOK, PROMPTS, 15, temperature=1.0, top_k=5, seed=3)
    assert sampled == aiayn.generate(model, TOK, PROMPTS, 15, temperature=1.0, top_k=5, seed=3)
    assert sampled != aiayn.generate(model, TOK, PROMPTS, 15, temperature=1.0, top_k=5, seed=4)


def test_a_stop_string_ends_its_row_and_is_not_part_of_the_text() -> None:
    model = lm()
    free = aiayn.generate(model, TOK, PROMPTS, 30, temperature=1.0, seed=1)
    stop = next(t[5:7] for t in free if len(set(t[5:7])) == 2)  # two characters seen in a row
    stopped = aiayn.generate(model, TOK, PROMPTS, 30, temperature=1.0, seed=1, stop=[stop])
    assert stopped == aiayn.generate(model, TOK, PROMPTS, 30, temperature=1.0, seed=1, stop=stop)
    for full, cut in zip(free, stopped, strict=True):
        assert stop not in cut
        assert full.startswith(cut)
        assert cut == (full[: full.index(stop)] if stop in full else full)


@pytest.mark.parametrize("stop", [[], ["ab"], ["a", "mmm", "p o"]])
def test_streamed_pieces_join_to_the_generated_text(stop) -> None:
    model = lm()
    options = dict(max_new_tokens=25, temperature=1.0, top_p=0.9, seed=5, stop=stop)
    pieces = list(aiayn.stream(model, TOK, PROMPTS, **options))
    joined = ["".join(p[row] for p in pieces) for row in range(len(PROMPTS))]
    assert joined == aiayn.generate(model, TOK, PROMPTS, **options)
    for step in pieces:  # nothing given out is ever the start of a stop string left open
        assert all(not any(s in piece for s in stop) for piece in step)


def test_the_end_of_sequence_token_ends_a_row() -> None:
    model = lm(output_bias=True)
    assert aiayn.generate(model, TOK, "abc", 10, temperature=0.0) != ""
    with torch.no_grad():
        model.lm_head.bias[TOK.eos_id] = 1e4
    assert aiayn.generate(model, TOK, ["abc", "de"], 10, temperature=0.0) == ["", ""]
    assert list(aiayn.stream(model, TOK, ["abc"], 10)) == [[""]]  # one step, then done


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(top_p=0.0), "top_p=0.0 must be in (0, 1]"),
        (dict(temperature=-1.0), "temperature=-1.0"),
        (dict(top_k=-1), "top_k=-1"),
        (dict(max_new_tokens=-1), "max_new_tokens=-1"),
        (dict(stop=[""]), "stop string must be non-empty text"),
    ],
)
def test_bad_options_are_named(options, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        aiayn.generate(lm(), TOK, "abc", **options)
    with pytest.raises(ValueError, match="prompt 1"):
        aiayn.generate(lm(), TOK, ["abc", ""])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4) | st.just(float("-inf")), min_size=1, max_size=12),
    st.integers(0, 20),
    st.floats(1e-9, 1.0),
)
def test_the_filters_keep_at_least_one_token_whatever_k_and_p(values, top_k, top_p) -> None:
    logits = torch.tensor([values])
    if not torch.isfinite(logits).any():
        logits[0, 0] = 0.0  # the model always leaves one token possible (banned are few)
    kept = torch.isfinite(filter_logits(logits, top_k, top_p))
    assert kept.any()
    assert kept[0, logits[0].argmax()]  # the likeliest among them

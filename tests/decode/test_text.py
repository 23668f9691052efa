"""`aiayn.generate` and `aiayn.stream`: prompts in, continuations out."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aiayn
from aiayn.data.tokenizer import train_chars
from aiayn.decode.sample import filter_logits
from aiayn.models.decoder_only import DecoderOnlyLM
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


def test_a_character_split_across_tokens_is_generated_whole(capsys, tmp_path) -> None:
    """Byte-level tokenizers (GPT-2, Llama 3, Qwen2): the text is the decoding of all the ids,
    and a stream holds back a character until its last byte, so no piece is U+FFFD."""
    from aiayn.cli import main
    from tests.byte_level import SPLIT, byte_level_tokenizer, rigged_lm, rigged_run

    tok = byte_level_tokenizer()
    model = rigged_lm(tok, "the", SPLIT)
    assert aiayn.generate(model, tok, "the", 20, temperature=0.0) == SPLIT
    assert aiayn.generate(model, tok, ["the", "a dog"], 20, temperature=0.0)[0] == SPLIT
    pieces = [p for [p] in aiayn.stream(model, tok, ["the"], 20, temperature=0.0)]
    assert "".join(pieces) == SPLIT and not any("\ufffd" in p for p in pieces)
    assert pieces[3:5] == ["", "é"]  # held for one step, then given whole
    cut = aiayn.generate(model, tok, "the", 4, temperature=0.0)  # the end within "é"
    assert cut == tok.decode([byte_ids_of("caf", tok) + byte_ids_of("é", tok)[:1]])[0]
    run = rigged_run(tmp_path / "run", tok, "the", SPLIT)
    capsys.readouterr()
    args = ["generate", "--model", str(run), "--prompt", "the", "--temperature", "0"]
    assert main(args) == 0
    assert capsys.readouterr().out == f"the{SPLIT}\n"
    assert main([*args, "--prompt", "a dog"]) == 0
    assert capsys.readouterr().out.startswith(f"the{SPLIT}\n")


def byte_ids_of(text: str, tok) -> list[int]:
    from tests.byte_level import byte_ids

    return byte_ids(tok, text)


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=12),
    st.integers(0, 60),
    st.one_of(st.none(), st.integers(0, 11)),
    st.booleans(),
)
def test_streamed_byte_level_text_is_the_decoding_of_all_ids(text, count, stop_at, bytewise):
    """Whatever ids a model chooses, split characters, invalid bytes and early ends included:
    the pieces join to the decoding of all the ids (cut at a stop string)."""
    from unittest import mock

    from aiayn.decode import text as text_module
    from tests.byte_level import byte_ids, byte_level_tokenizer

    tok = byte_level_tokenizer()
    ids = byte_ids(tok, text) if bytewise else tok.encode([text])[0]
    ids = ids[:count] if count < len(ids) else ids

    def chosen(model, prompt, max_new_tokens, *args, **kwargs):
        for i in [*ids, tok.eos_id][:max_new_tokens]:
            yield torch.tensor([i])

    whole = tok.decode([ids])[0]
    stop = [whole[stop_at : stop_at + 2]] if stop_at is not None and whole[stop_at:] else []
    with mock.patch.object(text_module, "generate_tokens", chosen):
        pieces = [p for [p] in aiayn.stream(torch.nn.Linear(1, 1), tok, ["x"], 80, stop=stop)]
    expected = whole[: whole.find(stop[0])] if stop else whole
    assert "".join(pieces) == expected  # so no piece has a U+FFFD that the decoding has not

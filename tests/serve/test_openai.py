"""The OpenAI-compatible API through the official `openai` client, against a real server (in
this process): greedy text equal to `aiayn generate --temperature 0`, streams that join to
the whole text, finish reasons, usage, and OpenAI's error objects."""

import json

import openai
import pytest

import aiayn
from aiayn.cli import main
from aiayn.serve.client import Client
from tests.byte_level import SPLIT, byte_level_tokenizer, rigged_run
from tests.serve.inprocess import call, engine, serving

PROMPTS = ["to be", "that is"]


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def cli_greedy(run, prompt: str, n: int, capsys) -> str:
    """What `aiayn generate --temperature 0` prints after the prompt."""
    capsys.readouterr()
    args = ["generate", "--model", str(run), "--temperature", "0", "--max-new-tokens", str(n)]
    assert main([*args, f"--prompt={prompt}"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(prompt) and printed.endswith("\n")
    return printed[len(prompt) : -1]


def test_models_and_greedy_completions_equal_the_cli(lm_url, lm_run, capsys) -> None:
    api = client(lm_url)
    [card] = api.models.list().data
    assert (card.id, card.owned_by) == (lm_run.resolve().name, "aiayn")
    got = api.completions.create(model=card.id, prompt=PROMPTS, max_tokens=12, temperature=0)
    assert [c.text for c in got.choices] == [cli_greedy(lm_run, p, 12, capsys) for p in PROMPTS]
    assert [(c.index, c.finish_reason) for c in got.choices] == [(0, "length"), (1, "length")]
    assert (got.object, got.usage.completion_tokens) == ("text_completion", 24)
    assert got.usage.prompt_tokens == sum(len(p) for p in PROMPTS)  # a character a token
    chunks = list(
        api.completions.create(
            model=card.id, prompt=PROMPTS, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    for i, choice in enumerate(got.choices):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == i]
        assert "".join(c.text for c in mine) == choice.text
        assert [c.finish_reason for c in mine][-1] == "length"
    assert chunks[-1].usage == got.usage


def test_seeded_samples_and_stop_strings(lm_url, lm_run) -> None:
    api, name = client(lm_url), lm_run.resolve().name
    ask = dict(model=name, prompt="to", max_tokens=20, temperature=1.0, seed=5, n=3)
    first = api.completions.create(**ask)
    assert [c.text for c in first.choices] == [
        c.text for c in api.completions.create(**ask).choices
    ]
    text = first.choices[0].text
    e = engine(lm_run)  # choice 0 samples with the seed, as `aiayn generate --seed` does
    assert text == aiayn.generate(e.model, e.tok, "to", 20, temperature=1.0, seed=5)
    stop = text[3:5]
    cut = api.completions.create(**ask, stop=stop).choices[0]
    assert (cut.text, cut.finish_reason) == (text[: text.index(stop)], "stop")


def test_bad_requests_get_openai_errors(lm_url, lm_run) -> None:
    api, name = client(lm_url), lm_run.resolve().name
    with pytest.raises(openai.NotFoundError) as found:
        api.completions.create(model="gpt-4", prompt="to")
    assert found.value.body["code"] == "model_not_found" and name in found.value.message
    for extra, param in (
        ({"logprobs": 2}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
    ):
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            api.completions.create(model=name, prompt="to", **extra)
        assert param in refused.value.message
        assert refused.value.body["type"] == "invalid_request_error"
    status, body = call(lm_url, "/v1/completions", {"model": name, "prompt": "to", "bogus": 1})
    assert (status, body["error"]["param"]) == (422, "bogus")
    status, body = call(lm_url, "/v1/completions", {"model": name, "prompt": ["to"] * 5, "n": 16})
    assert (status, body["error"]["param"]) == (413, "prompt")  # 80 sequences; the queue: 64
    big = Client(lm_url)
    status, body = big.call("/v1/chat/completions", raw=b" " * 1_000_001)  # the guard's 413
    big.close()
    assert (status, body["error"]["type"]) == (413, "invalid_request_error")
    with pytest.raises(openai.UnprocessableEntityError) as chat:  # no chat template
        api.chat.completions.create(model=name, messages=[{"role": "user", "content": "to"}])
    assert "/v1/completions" in chat.value.message
    assert api.completions.create(model=name, prompt="to", logprobs=None).choices


def test_an_end_id_and_split_characters_through_the_stream(tmp_path) -> None:
    """The rigged model's greedy text is SPLIT (é and 😀 a byte a token), then its end id."""
    run = rigged_run(tmp_path / "run", byte_level_tokenizer(), "the", SPLIT)
    with serving(engine(run)) as url:
        api = client(url)
        ask = dict(model="run", prompt="the", max_tokens=20, temperature=0)
        whole = api.completions.create(**ask).choices[0]
        assert (whole.text, whole.finish_reason) == (SPLIT, "stop")
        pieces = [c.choices[0].text for c in api.completions.create(**ask, stream=True)]
        assert "".join(pieces) == SPLIT and "é" in pieces and "😀" in pieces
        assert not any("\ufffd" in p for p in pieces)
        status, raw = call(url, "/v1/models/run")
        assert (status, raw["id"]) == (200, "run")
    json.dumps(raw)

"""Every endpoint of a real server, for each family, against the CLI's own answers."""

import math

import pytest
import torch

from aiayn.cli import main
from aiayn.tasks.language_model import load_language_model
from tests.cli_helpers import WORDS

SENTENCES = ["a man sees the dog", "the small cat eats", "", "a big red ball and a woman sleeps"]


def cli_lines(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("server", "family"),
    [
        ("translation_server", "encoder_decoder"),
        ("lm_server", "decoder_only"),
        ("classifier_server", "encoder_classifier"),
    ],
)
def test_health_and_model(request, server, family) -> None:
    server = request.getfixturevalue(server)
    assert server.call("/health") == (200, {"status": "ok"})
    status, info = server.call("/v1/model")
    assert status == 200
    assert info["family"] == family == info["config"]["model"]["arch"]
    assert info["parameters"] > 1000
    assert info["vocab_size"] == info["config"]["model"]["vocab_size"]


@pytest.mark.parametrize("beam", [1, 2, 3])
def test_translations_equal_the_cli_at_the_same_beam(
    translation_server, translation_run, tmp_path, capsys, beam
) -> None:
    source = tmp_path / "src.txt"
    source.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cli = cli_lines(capsys, "translate", "--model", str(translation_run), "--beam", str(beam),
                    "--input", str(source))  # fmt: skip
    status, answer = translation_server.call("/v1/translate", {"text": SENTENCES, "beam": beam})
    assert status == 200
    assert [t["text"] for t in answer["translations"]] == cli
    assert answer["translations"][2] == {"text": "", "score": 0.0, "n_best": [["", 0.0]]}
    assert all(len(t.split()) >= 2 for i, t in enumerate(cli) if i != 2)  # a real test


def test_n_best_lists_are_ranked_and_start_with_the_translation(translation_server) -> None:
    body = {"text": SENTENCES[:2], "beam": 3, "n_best": 3, "alpha": 0.6}
    status, answer = translation_server.call("/v1/translate", body)
    assert status == 200
    for t in answer["translations"]:
        assert 1 <= len(t["n_best"]) <= 3
        assert t["n_best"][0] == [t["text"], t["score"]]
        scores = [score for _, score in t["n_best"]]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


def test_alpha_changes_the_scores(translation_server) -> None:
    def score(alpha: float) -> float:
        body = {"text": [SENTENCES[3]], "beam": 2, "alpha": alpha}
        return translation_server.call("/v1/translate", body)[1]["translations"][0]["score"]

    assert score(0.0) != pytest.approx(score(1.0))


def test_seeded_generation_equals_the_cli_and_streams_to_the_same_text(
    lm_server, lm_run, capsys
) -> None:
    options = {"max_new_tokens": 40, "temperature": 0.9, "top_k": 5, "top_p": 0.9, "seed": 7}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    printed = "\n".join(cli_lines(capsys, "generate", "--model", str(lm_run), "--prompt", "to be",
                                  *flags))  # fmt: skip
    status, answer = lm_server.call("/v1/generate", {"prompt": "to be", **options})
    assert status == 200
    assert printed == "to be" + answer["text"]
    assert len(answer["text"]) > 10

    client = lm_server.client()
    events = list(client.events("/v1/generate", {"prompt": "to be", **options, "stream": True}))
    client.close()
    tokens = [data for name, data in events if name == "token"]
    assert events[-1] == ("done", {"text": answer["text"]})
    assert "".join(t["text"] for t in tokens) == answer["text"]
    # a character model: one event per token, each with the probability it was drawn with
    assert len(tokens) == options["max_new_tokens"]
    assert all(0 < t["p"] <= 1 for t in tokens)


def test_greedy_token_probabilities_are_the_models(lm_server, lm_run) -> None:
    client = lm_server.client()
    body = {"prompt": "to be", "max_new_tokens": 8, "temperature": 0, "stream": True}
    tokens = [data for name, data in client.events("/v1/generate", body) if name == "token"]
    client.close()
    # each probability again, from one forward pass over the prompt and the output together
    model, tok = load_language_model(lm_run, log=lambda _: None)
    ids = tok.encode_prompts(["to be" + "".join(t["text"] for t in tokens)])[0]
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))
    # drawn from the tokens a model may choose: the special ones it never learnt are barred
    logits[..., sorted({tok.pad_id, tok.bos_id, tok.unk_id} - {tok.eos_id})] = float("-inf")
    probs = logits.softmax(-1)[0]
    start = len(ids) - len(tokens)
    expected = [float(probs[i - 1, ids[i]]) for i in range(start, len(ids))]
    assert [t["p"] for t in tokens] == pytest.approx(expected, abs=1e-4)


def test_classify_gives_each_texts_label_and_probabilities(
    classifier_server, classifier_run, tmp_path, capsys
) -> None:
    texts = ["the film was great", "a boring plot", "really quite awful actors"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    cli = cli_lines(capsys, "classify", "--model", str(classifier_run), "--input", str(source))
    status, answer = classifier_server.call("/v1/classify", {"text": texts})
    assert status == 200
    for line, result in zip(cli, answer["labels"], strict=True):
        label, p = line.split("\t")
        assert result["label"] == label
        assert result["probabilities"][label] == pytest.approx(float(p), abs=1e-4)
        assert math.fsum(result["probabilities"].values()) == pytest.approx(1.0)


def check_maps(maps: list[dict]) -> None:
    for m in maps:
        assert len(m["weights"][0]) == len(m["rows"]) and len(m["weights"][0][0]) == len(m["cols"])
        for head in m["weights"]:
            for row in head:
                assert math.fsum(row) == pytest.approx(1.0, abs=2e-3)  # rounded to 4 places


def test_translation_attention_has_every_kind_and_layer(translation_server) -> None:
    status, answer = translation_server.call("/v1/attention", {"text": "a man sees the dog"})
    assert status == 200
    kinds = sorted({m["kind"] for m in answer["maps"]})
    assert kinds == ["cross", "decoder", "encoder"]
    cross = next(m for m in answer["maps"] if m["kind"] == "cross")
    assert cross["cols"][-1] == "</s>" and cross["rows"][-1] == "</s>"
    assert len(cross["weights"]) == 2  # heads
    check_maps(answer["maps"])
    # a given target is read instead of the model's own translation
    source = "a man sees the dog"
    target = " ".join(WORDS[w] for w in source.split(" "))
    forced = translation_server.call("/v1/attention", {"text": source, "target": target})[1]
    assert forced["text"] == target
    rows = next(m for m in forced["maps"] if m["kind"] == "cross")["rows"]
    assert "".join(rows[:-1]).replace("▁", " ").strip() == target


def test_lm_and_classifier_attention(lm_server, classifier_server) -> None:
    status, answer = lm_server.call("/v1/attention", {"text": "to be or"})
    assert status == 200 and {m["kind"] for m in answer["maps"]} == {"decoder"}
    assert len(answer["maps"]) == 2 and answer["maps"][0]["rows"] == list("to be or")
    check_maps(answer["maps"])
    lower = answer["maps"][0]["weights"][0]
    assert all(w == 0 for i, row in enumerate(lower) for w in row[i + 1 :])  # causal
    status, answer = classifier_server.call("/v1/attention", {"text": "a lovely film"})
    assert status == 200 and {m["kind"] for m in answer["maps"]} == {"encoder"}
    assert answer["text"] in ("0", "1")
    check_maps(answer["maps"])


@pytest.mark.parametrize(
    ("server", "path", "body", "family"),
    [
        ("lm_server", "/v1/translate", {"text": ["x"]}, "decoder_only"),
        ("translation_server", "/v1/generate", {"prompt": "x"}, "encoder_decoder"),
        ("translation_server", "/v1/classify", {"text": ["x"]}, "encoder_decoder"),
    ],
)
def test_an_endpoint_of_another_family_is_404_naming_the_family(
    request, server, path, body, family
) -> None:
    status, answer = request.getfixturevalue(server).call(path, body)
    assert status == 404
    assert family in answer["error"]


def test_the_explorer_page_and_its_files_are_served(translation_server) -> None:
    client = translation_server.client()
    for path, kind in (("/", "text/html"), ("/static/explorer.js", "javascript")):
        client.conn.request("GET", path)
        response = client.conn.getresponse()
        body = response.read().decode()
        assert response.status == 200 and kind in response.getheader("Content-Type")
        assert "http" not in body.replace("http://www.w3.org", "")  # nothing fetched elsewhere
    client.conn.request("GET", "/static/../engines.py")
    response = client.conn.getresponse()
    assert response.status == 404
    response.read()
    client.close()


def test_attention_over_a_long_text_is_cut_to_the_models_length(translation_server) -> None:
    long = " ".join(["a man sees the dog"] * 400)
    status, answer = translation_server.call("/v1/attention", {"text": long, "target": long})
    assert status == 200
    limit = translation_server.call("/v1/model")[1]["config"]["model"]["max_len"]
    for m in answer["maps"]:
        assert len(m["rows"]) <= limit and len(m["cols"]) <= limit

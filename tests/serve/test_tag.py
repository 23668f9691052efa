"""/v1/tag and the explorer's attention for a tagger, answered as `aiayn tag` answers."""

from __future__ import annotations

from pathlib import Path

import torch

from aiayn.serve.batcher import Batcher
from aiayn.serve.engines import load_engine
from aiayn.serve.tagging import TaggerEngine
from tests.serve.inprocess import call, serving
from tests.tasks.test_tagging import quiet, tagger_run  # noqa: F401 (a fixture)


def test_tag_endpoint_gives_the_taggers_tags(tagger_run: Path) -> None:  # noqa: F811
    engine = load_engine(tagger_run, None, torch.device("cpu"), quiet)
    assert isinstance(engine, TaggerEngine)
    sentences = [["the", "cat", "sat"], ["a", "dog", "saw", "the", "mat", "."]]
    tags = engine.tagger.tag(sentences)
    with serving(engine, Batcher()) as url:
        status, answer = call(url, "/v1/tag", {"text": [" ".join(s) for s in sentences]})
        assert status == 200
        assert answer == {
            "sentences": [{"words": w, "tags": t} for w, t in zip(sentences, tags, strict=True)]
        }
        status, answer = call(url, "/v1/tag", {"text": ["the cat", "  "]})
        assert status == 422 and answer["field"] == "text[1]"
        status, maps = call(url, "/v1/attention", {"text": "the cat sat"})
        assert status == 200 and maps["tags"] == tags[0] and maps["words"] == sentences[0]
        assert maps["text"] == " ".join(
            f"{w}/{t}" for w, t in zip(sentences[0], tags[0], strict=True)
        )
        assert maps["maps"][0]["rows"][0] == "<s>" and len(maps["maps"]) == 1
        status, answer = call(url, "/v1/classify", {"text": ["the cat"]})
        assert status == 404 and "(its endpoint: /v1/tag)" in answer["error"]

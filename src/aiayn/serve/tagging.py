"""The server's tagger engine: /v1/tag, and the explorer's attention over a tagged sentence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aiayn.serve.batcher import Job
from aiayn.serve.engines import Engine, attention_maps
from aiayn.serve.schema import InputError
from aiayn.tasks.tagger import Tagger


def words_of(text: str, field: str) -> list[str]:
    """The words of a sentence, split at spaces; a sentence without any is refused."""
    words = text.split()
    if not words:
        raise InputError(field, f"{field}: {text[:40]!r} has no words; give some text")
    return words


class TaggerEngine(Engine):
    family = "encoder_tagger"

    def __init__(self, run_dir: Path, tagger: Tagger) -> None:
        super().__init__(run_dir)
        self.tagger, self.model = tagger, tagger.model

    @classmethod
    def load(
        cls, run_dir: Path, weights: str | None, device: torch.device, log: Callable[[str], None]
    ) -> TaggerEngine:
        from aiayn.tasks.tagging import load_tagger

        return cls(run_dir, load_tagger(run_dir, weights, device, log))

    def tag_job(self, texts: list[str]) -> Job:
        sentences = [words_of(t, f"text[{i}]") for i, t in enumerate(texts)]

        def run(items: list[list[str]]) -> list[dict[str, Any]]:
            tagged = self.tagger.tag(items)
            return [{"words": w, "tags": t} for w, t in zip(items, tagged, strict=True)]

        return Job("tag", sentences, run)

    def attention_job(self, text: str, target: str | None) -> Job:
        """The tags over the words as the answer's text ("word/TAG ..."), and each layer's
        attention between the pieces of the sentence's first row (words past the model's
        length are tagged, not drawn)."""
        words = words_of(text, "text")

        def run(items: list[list[str]]) -> list[dict[str, Any]]:
            [sentence] = items
            (row, _), *_ = self.tagger.rows([sentence])[0]
            tags = self.tagger.tag([sentence])[0]
            tokens = torch.tensor([row], device=self.tagger.device)
            labels = self.tagger.tok.tokens(row)
            return [
                {
                    "text": " ".join(f"{w}/{t}" for w, t in zip(sentence, tags, strict=True)),
                    "words": sentence,
                    "tags": tags,
                    "maps": attention_maps(self.model, tokens, labels, "encoder"),
                }
            ]

        return Job(object(), [words], run)

"""What a server does with each family of model: a run directory loaded once, and the jobs
(aiayn.serve.batcher) that answer each kind of request.

Translations and classifications of requests with the same options share a batch. A generation
of /v1/generate runs alone: a sample drawn with a seed must be the text `aiayn generate` gives
for that seed, and a batch shares one random stream. (The OpenAI API's generations are batched
continuously, each sequence with a stream of its own: aiayn.serve.scheduler.) Attention maps
run alone too (one text each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aiayn.decode.text import stream
from aiayn.decode.translate import Translator
from aiayn.families import family
from aiayn.nn.attention import record_attention
from aiayn.run.config import read_run_config
from aiayn.serve.batcher import Job
from aiayn.serve.chat import ChatTemplate
from aiayn.serve.schema import InputError
from aiayn.tasks import place
from aiayn.tasks.classification import Classifier

Maps = list[dict[str, Any]]


class Engine:
    """A loaded run of one family; each method gives the job that answers one request."""

    family: str
    model: nn.Module

    def __init__(self, run_dir: Path) -> None:
        self.cfg = read_run_config(run_dir)

    def info(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "vocab_size": self.cfg.model.vocab_size,
            "config": self.cfg.to_dict(),
        }

    def attention_job(self, text: str, target: str | None) -> Job:
        raise NotImplementedError

    def use_cuda_graph(self) -> None:
        """Decode with each step replayed as a CUDA graph (`serve --cuda-graph`)."""
        raise ValueError(
            f"--cuda-graph decodes translation models; this run is a {self.family} model"
        )


def attention_maps(
    model: nn.Module, tokens: torch.Tensor, labels: list[str], kind: str, **kw: Any
) -> Maps:
    """Each self-attention layer's weights while `model` reads one row of `tokens`."""
    with torch.no_grad(), record_attention(model) as weights:
        model(tokens, **kw)
    return [
        {"kind": kind, "layer": int(name.split(".")[2]), "rows": labels, "cols": labels, **w8(w)}
        for name, w in weights.items()
    ]


def w8(weights: torch.Tensor) -> dict[str, list]:
    """(1, H, T_q, T_k) weights as nested lists, rounded to 4 places (the page shows 3)."""
    # in float64, so that the rounded values print as 0.7493, not float32's 0.7493000030517578
    return {"weights": weights[0].double().cpu().round(decimals=4).tolist()}


class TranslationEngine(Engine):
    family = "encoder_decoder"

    def __init__(self, run_dir: Path, translator: Translator) -> None:
        super().__init__(run_dir)
        self.translator, self.model = translator, translator.model

    @classmethod
    def load(
        cls, run_dir: Path, weights: str | None, device: torch.device, log: Callable[[str], None]
    ) -> TranslationEngine:
        from aiayn.tasks.translation import load_translator

        return cls(run_dir, load_translator(run_dir, weights, device, log))

    def use_cuda_graph(self) -> None:
        self.translator.graph = True

    def translate_job(self, texts: list[str], beam: int, alpha: float, n_best: int) -> Job:
        def run(items: list[str]) -> list[dict[str, Any]]:
            found = self.translator.translate_scored(items, beam, alpha, n_best)
            return [
                {"text": hyps[0][0], "score": hyps[0][1], "n_best": [list(h) for h in hyps]}
                for hyps in found
            ]

        return Job(("translate", beam, alpha, n_best), texts, run)

    def attention_job(self, text: str, target: str | None) -> Job:
        def run(items: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
            [(source, tgt)] = items
            maps = self.translator.attention(source, tgt)
            return [
                {
                    "text": maps.translation,
                    "maps": [
                        {"kind": kind, "layer": n, "rows": rows, "cols": cols, **w8(w[None])}
                        for kind, layers in maps.layers.items()
                        for n, (w, rows, cols) in sorted(layers.items())
                    ],
                }
            ]

        return Job(object(), [(text, target)], run)


class LanguageEngine(Engine):
    family = "decoder_only"

    def __init__(self, run_dir: Path, model: nn.Module, tok: Any) -> None:
        super().__init__(run_dir)
        self.model, self.tok = model, tok
        self.model_id = run_dir.resolve().name  # what the OpenAI API calls it
        self.chat = ChatTemplate.of_run(run_dir, tok)
        # held by whatever runs the model: a job of the batcher, a step of continuous batching
        self.lock = threading.Lock()

    @classmethod
    def load(
        cls, run_dir: Path, weights: str | None, device: torch.device, log: Callable[[str], None]
    ) -> LanguageEngine:
        from aiayn.tasks.language_model import load_language_model

        model, tok = load_language_model(run_dir, weights, log)
        return cls(run_dir, place(model, device), tok)

    def prompt_ids(self, prompt: str, field: str = "prompt") -> list[int]:
        [ids] = self.tok.encode_prompts([prompt])
        if not ids:
            raise InputError(field, f"{field}: {prompt[:40]!r} has no tokens; give some text")
        return ids

    def generate_job(
        self,
        prompt: str,
        options: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
        stop: threading.Event,
    ) -> Job:
        """Sample a continuation of `prompt` (options as `aiayn.generate` takes them), calling
        `send` with {"text": new text, "p": the token's probability} after each token (the
        last call, with p null, gives out text held back for a stop string), until the end or
        until `stop` is set (the client went away)."""
        self.prompt_ids(prompt)

        def run(items: list[str]) -> list[str]:
            chosen: list[float] = []
            steps = stream(self.model, self.tok, items, **options, on_probs=chosen.append)
            text = ""
            with self.lock:
                for i, [piece] in enumerate(steps):
                    if stop.is_set():
                        break
                    text += piece
                    p = round(float(chosen[i][0]), 4) if i < len(chosen) else None
                    if piece or p is not None:
                        send({"text": piece, "p": p})
            return [text]

        return Job(object(), [prompt], run)

    def attention_job(self, text: str, target: str | None) -> Job:
        self.prompt_ids(text, "text")  # refused before it is queued

        def run(items: list[str]) -> list[dict[str, Any]]:
            ids = self.prompt_ids(items[0], "text")[-self.cfg.model.max_len :]
            tokens = torch.tensor([ids], device=next(self.model.parameters()).device)
            labels = self.tok.tokens(ids)
            with self.lock:
                maps = attention_maps(self.model, tokens, labels, "decoder")
            return [{"text": None, "maps": maps}]

        return Job(object(), [text], run)


class ClassifierEngine(Engine):
    family = "encoder_classifier"

    def __init__(self, run_dir: Path, classifier: Classifier) -> None:
        super().__init__(run_dir)
        self.classifier, self.model = classifier, classifier.model

    @classmethod
    def load(
        cls, run_dir: Path, weights: str | None, device: torch.device, log: Callable[[str], None]
    ) -> ClassifierEngine:
        from aiayn.tasks.classification import load_classifier

        return cls(run_dir, load_classifier(run_dir, weights, device, log))

    def classify_job(self, texts: list[str]) -> Job:
        def run(items: list[str]) -> list[dict[str, Any]]:
            labels = self.classifier.labels
            out = []
            for row in self.classifier.probabilities(items).tolist():
                best = max(range(len(row)), key=row.__getitem__)
                out.append(
                    {"label": labels[best], "probabilities": dict(zip(labels, row, strict=True))}
                )
            return out

        return Job("classify", texts, run)

    def attention_job(self, text: str, target: str | None) -> Job:
        c = self.classifier

        def run(items: list[str]) -> list[dict[str, Any]]:
            [ids] = c.ids(items)
            tokens = torch.tensor([ids], device=c.device)
            labels = c.tok.tokens(ids)
            probs = c.probabilities(items)[0].tolist()
            return [
                {
                    "text": c.labels[max(range(len(probs)), key=probs.__getitem__)],
                    "maps": attention_maps(c.model, tokens, labels, "encoder"),
                }
            ]

        return Job(object(), [text], run)


def load_engine(
    run_dir: str | Path, weights: str | None, device: torch.device, log: Callable[[str], None]
) -> Engine:
    """The engine of the run directory's family (its class's `load`), its model on `device`."""
    run_dir = Path(run_dir)
    arch = read_run_config(run_dir).model.arch
    return family(arch).part("engine").load(run_dir, weights, device, log)

"""Sentences in, sentences out: tokenize, batch by length, search, detokenize, restore order."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch

from aiayn.data.batching import token_budget_batches
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.text import chunked
from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.search import Special, beam_search, greedy, n_best_search
from aiayn.decode.weights import InputMajor, search_weights
from aiayn.decodeconfig import DecodeConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.nn.attention import record_attention

Search = Callable[[torch.Tensor], list[list[tuple[list[int], float]]]]


@dataclass
class AttentionMaps:
    """The translation, and for each kind (encoder, decoder, cross) and layer:
    the weights (H, T_q, T_k) with the query and key token labels."""

    translation: str
    layers: dict[str, dict[int, tuple[torch.Tensor, list[str], list[str]]]]


class Translator:
    """A trained encoder-decoder with its tokenizers and decoding settings."""

    def __init__(
        self,
        model: EncoderDecoder,
        src_tok: TextTokenizer,
        tgt_tok: TextTokenizer,
        decode: DecodeConfig,
        max_len: int,
        recase: Callable[[str], str] | None = None,
    ) -> None:
        """`recase` restores case to the output of a model trained on lowercased text."""
        self.model, self.src_tok, self.tgt_tok = model.eval(), src_tok, tgt_tok
        self.decode, self.max_len, self.recase = decode, max_len, recase
        self.special = Special(tgt_tok.bos_id, tgt_tok.eos_id, tgt_tok.pad_id, tgt_tok.end_ids[1:])
        self.device = next(model.parameters()).device
        self.graph = False  # searches step with static shapes, in a CUDA graph on CUDA

    def translate(self, sentences: list[str], beam: int | None = None) -> list[str]:
        """Translate each sentence; beam 1 is greedy search. Empty lines stay empty."""
        beam = self.decode.beam if beam is None else beam
        return [hyps[0][0] for hyps in self._batched(sentences, partial(self._search, beam=beam))]

    def translate_scored(
        self, sentences: list[str], beam: int, alpha: float, n_best: int = 1
    ) -> list[list[tuple[str, float]]]:
        """Each sentence's `n_best` translations by beam search, best first, with their
        length-normalised log-probabilities (beam 1 gives greedy search's, scored). An empty
        line gives [("", 0.0)]."""
        d = self.decode
        kw = dict(max_extra=d.max_extra, cap=self.max_len, n_best=n_best, norm=d.length_norm)
        kw["graph"] = self.graph

        def search(src: torch.Tensor) -> list[list[tuple[list[int], float]]]:
            return n_best_search(self.model, src, self.special, beam, alpha, **kw)

        return self._batched(sentences, search)

    def _batched(self, sentences: list[str], search: Search) -> list[list[tuple[str, float]]]:
        """`search` over batches of sentences of alike length, detokenized, in input order."""
        ids = self._source_ids(sentences)
        out: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in sentences]
        real = [i for i, s in enumerate(sentences) if s.strip()]
        lengths = [len(ids[i]) for i in real]
        weights = self._weights()
        for batch in token_budget_batches(lengths, self.decode.batch_tokens, 0, shuffle=False):
            rows = [real[j] for j in batch]
            src = pad_to_tensor([ids[i] for i in rows], self.special.pad).to(self.device)
            with weights.active() if weights else nullcontext(), torch.inference_mode():
                found = search(src)
            for i, hyps in zip(rows, found, strict=True):
                texts = self._detokenize([tokens for tokens, _ in hyps])
                out[i] = [(t, score) for t, (_, score) in zip(texts, hyps, strict=True)]
        return out

    def _weights(self) -> InputMajor | None:
        """Weights lent to the model's linear layers while it decodes (a CPU speed-up)."""
        return search_weights(self.model)

    def _detokenize(self, hyps: list[list[int]]) -> list[str]:
        texts = self.tgt_tok.decode(hyps)
        return [self.recase(t) for t in texts] if self.recase else texts

    def translate_stream(
        self, lines: Iterator[str], beam: int | None = None, chunk: int = 256
    ) -> Iterator[str]:
        """Translate a stream of lines in chunks, yielding outputs in input order."""
        for block in chunked((line.rstrip("\n") for line in lines), chunk):
            yield from self.translate(block, beam)

    def _source_ids(self, sentences: list[str]) -> list[list[int]]:
        """Token ids then </s>, cut (with a warning) to the model's maximum length."""
        rows = []
        for sentence, ids in zip(sentences, self.src_tok.encode(sentences), strict=True):
            if len(ids) + 1 > self.max_len:
                print(
                    f"warning: {sentence[:30]!r}... has {len(ids)} tokens; translating its "
                    f"first {self.max_len - 1} (the model's maximum is {self.max_len})",
                    file=sys.stderr,
                )
                ids = ids[: self.max_len - 1]
            rows.append([*ids, self.src_tok.eos_id])
        return rows

    @torch.no_grad()
    def inputs(
        self, source: str, target: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
        """The model's inputs for reading `source` and writing `target` (by default its own
        greedy translation): source ids (1, S), decoder input ids (1, T) (<s>, then the target),
        and their token labels."""
        [src_ids] = self._source_ids([source])
        if target is None:
            src = torch.tensor([src_ids], device=self.device)
            tgt_ids = greedy(self.model, src, self.special, self.decode.max_extra, self.max_len)[0]
        else:
            # cut as a source is: the decoder reads at most max_len tokens, <s> first
            tgt_ids = self.tgt_tok.encode([target])[0][: self.max_len - 1]
        src = torch.tensor([src_ids], device=self.device)
        tgt_in = torch.tensor([[self.special.bos, *tgt_ids]], device=self.device)
        src_labels = [*self.src_tok.tokens(src_ids[:-1]), "</s>"]
        return src, tgt_in, src_labels, ["<s>", *self.tgt_tok.tokens(tgt_ids)]

    @torch.no_grad()
    def attention(self, source: str, target: str | None = None) -> AttentionMaps:
        """Per-layer, per-head attention while the model reads `source` and writes `target`
        (by default its own greedy translation)."""
        src, tgt_in, src_labels, in_labels = self.inputs(source, target)
        with record_attention(self.model) as weights:
            self.model(src, tgt_in)
        out_labels = [*in_labels[1:], "</s>"]
        maps = AttentionMaps(self._detokenize([tgt_in[0, 1:].tolist()])[0], {})
        for name, w in weights.items():
            layer = int(name.split(".")[3])
            if ".encoder." in name:
                kind, rows, cols = "encoder", src_labels, src_labels
            elif name.endswith("cross_attn"):
                kind, rows, cols = "cross", out_labels, src_labels
            else:
                kind, rows, cols = "decoder", out_labels, in_labels
            maps.layers.setdefault(kind, {})[layer] = (w[0].float().cpu(), rows, cols)
        return maps

    def _search(self, src: torch.Tensor, beam: int) -> list[list[tuple[list[int], float]]]:
        d = self.decode
        kw = {"max_extra": d.max_extra, "cap": self.max_len, "graph": self.graph}
        if beam == 1:  # unscored: nothing needs greedy search's log-probabilities here
            return [[(tokens, 0.0)] for tokens in greedy(self.model, src, self.special, **kw)]
        found = beam_search(self.model, src, self.special, beam, d.alpha, **kw, norm=d.length_norm)
        return [[best] for best in found]

"""Sentences in, sentences out: tokenize, batch by length, search, detokenize, restore order."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import torch

from aiayn.config import DecodeConfig
from aiayn.data.batching import token_budget_batches
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.search import Special, beam_search, greedy
from aiayn.models.encoder_decoder import EncoderDecoder


class Translator:
    """A trained encoder-decoder with its tokenizers and decoding settings."""

    def __init__(
        self,
        model: EncoderDecoder,
        src_tok: TextTokenizer,
        tgt_tok: TextTokenizer,
        decode: DecodeConfig,
        max_len: int,
    ) -> None:
        self.model, self.src_tok, self.tgt_tok = model.eval(), src_tok, tgt_tok
        self.decode, self.max_len = decode, max_len
        self.special = Special(tgt_tok.bos_id, tgt_tok.eos_id, tgt_tok.pad_id)
        self.device = next(model.parameters()).device

    def translate(self, sentences: list[str], beam: int | None = None) -> list[str]:
        """Translate each sentence; beam 1 is greedy search. Empty lines stay empty."""
        beam = self.decode.beam if beam is None else beam
        ids = [self._source_ids(i, s) for i, s in enumerate(sentences)]
        out: list[str] = [""] * len(sentences)
        real = [i for i, s in enumerate(sentences) if s.strip()]
        lengths = [len(ids[i]) for i in real]
        for batch in token_budget_batches(lengths, self.decode.batch_tokens, 0, shuffle=False):
            rows = [real[j] for j in batch]
            src = pad_to_tensor([ids[i] for i in rows], self.special.pad).to(self.device)
            hyps = self._search(src, beam)
            for i, text in zip(rows, self.tgt_tok.decode(hyps), strict=True):
                out[i] = text
        return out

    def translate_stream(
        self, lines: Iterator[str], beam: int | None = None, chunk: int = 256
    ) -> Iterator[str]:
        """Translate a stream of lines in chunks, yielding outputs in input order."""
        buffer: list[str] = []
        for line in lines:
            buffer.append(line.rstrip("\n"))
            if len(buffer) == chunk:
                yield from self.translate(buffer, beam)
                buffer = []
        if buffer:
            yield from self.translate(buffer, beam)

    def _source_ids(self, index: int, sentence: str) -> list[int]:
        ids = self.src_tok.encode([sentence])[0]
        if len(ids) + 1 > self.max_len:
            print(
                f"warning: sentence {index + 1} has {len(ids)} tokens; translating its first "
                f"{self.max_len - 1} (the model's maximum is {self.max_len})",
                file=sys.stderr,
            )
            ids = ids[: self.max_len - 1]
        return [*ids, self.src_tok.eos_id]

    @torch.no_grad()
    def _search(self, src: torch.Tensor, beam: int) -> list[list[int]]:
        kw = {"max_extra": self.decode.max_extra, "cap": self.max_len}
        if beam == 1:
            return greedy(self.model, src, self.special, **kw)
        return beam_search(self.model, src, self.special, beam, self.decode.alpha, **kw)

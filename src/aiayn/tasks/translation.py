"""Translation as a training task: parallel text, BPE, the encoder-decoder, BLEU on validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from aiayn.config import RunConfig
from aiayn.data.noise import word_dropout
from aiayn.data.parallel import ParallelData, TranslationBatch
from aiayn.data.recase import Recaser
from aiayn.data.text import read_parallel
from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.translate import Translator
from aiayn.evaluate import score_translations
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.prepare.dataset import (
    PreparedParallel,
    check_dataset,
    fit_data_tokenizer,
    read_manifest,
    refuse_other_tokenizers,
)
from aiayn.run.atomic import atomic_write_text
from aiayn.run.files import RECASER, SRC_TOKENIZER, TOKENIZER
from aiayn.run.paths import inside
from aiayn.tasks import check_vocabulary, load_run, load_tokenizer, place, vocabulary
from aiayn.train.chunked import output_loss
from aiayn.train.loss import rdrop_kl


def load_tokenizers(run_dir: Path, cfg: RunConfig) -> tuple[TextTokenizer, TextTokenizer]:
    """(source, target) tokenizers of a run; one file when the vocabulary is joint."""
    m = cfg.model
    tgt = load_tokenizer(run_dir, TOKENIZER, m.vocab_size)
    if not inside(run_dir, SRC_TOKENIZER).exists():
        return check_vocabulary(tgt, m.source_vocab, run_dir / TOKENIZER), tgt
    return load_tokenizer(run_dir, SRC_TOKENIZER, m.source_vocab), tgt


def dataset_tokenizers(folder: Path) -> tuple[TextTokenizer, TextTokenizer]:
    """(source, target) tokenizers of a prepared dataset."""
    tgt = TextTokenizer.load(inside(folder, TOKENIZER))
    src_path = inside(folder, SRC_TOKENIZER)
    return (TextTokenizer.load(src_path) if src_path.exists() else tgt), tgt


def load_recaser(run_dir: Path) -> Recaser | None:
    path = inside(run_dir, RECASER)
    return Recaser.load(path) if path.exists() else None


def fit_tokenizers(cfg: RunConfig, src: list[str], tgt: list[str]) -> tuple[TextTokenizer, ...]:
    d = cfg.data
    fit = partial(fit_data_tokenizer, d)
    if d.joint_vocab:
        joint = fit(src + tgt)
        return joint, joint
    return fit(src), fit(tgt)


class TranslationTask:
    """Everything the trainer needs to know about translation."""

    monitor, higher_is_better = "val_bleu", True  # val_loss, lower, when BLEU is off

    def __init__(
        self, cfg: RunConfig, run_dir: Path, resume: bool, log: Callable[[str], None] = print
    ) -> None:
        d = cfg.data
        prepared = Path(d.prepared) if d.prepared else None
        needed = () if prepared else ("train_src", "train_tgt")
        for name in (*needed, *(("valid_tgt",) if d.valid_src else ())):
            if not getattr(d, name):
                raise ValueError(f"data.{name} is unset; translation needs line-aligned files")
        text = None if prepared else read_parallel(d.train_src, d.train_tgt)
        self.valid_text = read_parallel(d.valid_src, d.valid_tgt) if d.valid_src else None
        if prepared:
            check_dataset(prepared, read_manifest(prepared), d)
            self.src_tok, self.tgt_tok = dataset_tokenizers(prepared)
            self.recaser = load_recaser(prepared)
        if resume or cfg.train.init:  # the run's tokenizers, or a fine-tuning's base's
            source = run_dir if resume else Path(cfg.train.init)
            run_toks = load_tokenizers(source, cfg)
            if prepared:
                refuse_other_tokenizers((self.src_tok, self.tgt_tok), run_toks, prepared, source)
            self.src_tok, self.tgt_tok = run_toks
            self.recaser = load_recaser(source)
        elif not prepared:
            self.src_tok, self.tgt_tok = fit_tokenizers(cfg, *text)
            self.recaser = Recaser.fit(text[1]) if d.lowercase else None
        joint = self.src_tok is self.tgt_tok
        self.cfg = cfg.replace(
            "model",
            vocab_size=vocabulary(cfg, self.tgt_tok),
            pad_id=self.tgt_tok.pad_id,
            src_vocab_size=cfg.model.src_vocab_size
            if cfg.train.init
            else None
            if joint
            else self.src_tok.vocab_size,
        )
        full = self._encode(*text) if text else self._open(prepared)
        self.train, dropped = full.without_long(d.max_pair_len)
        log(
            f"training pairs: {len(self.train):,} kept, {dropped:,} longer than "
            f"data.max_pair_len={d.max_pair_len} tokens dropped"
        )
        if not len(self.train):
            raise ValueError(f"no training pair fits data.max_pair_len={d.max_pair_len}")
        self.valid = self._encode(*self.valid_text) if self.valid_text else None
        if not cfg.train.bleu or self.valid is None:
            self.monitor, self.higher_is_better = "val_loss", False
        self.model = EncoderDecoder(self.cfg.model)

    def _encode(self, src: list[str], tgt: list[str]) -> ParallelData:
        t = self.tgt_tok
        return ParallelData.from_ids(
            self.src_tok.encode(src), t.encode(tgt), t.bos_id, t.eos_id, t.pad_id
        )

    def _open(self, folder: Path) -> PreparedParallel:
        t, vocab = self.tgt_tok, (self.src_tok.vocab_size, self.tgt_tok.vocab_size)
        return PreparedParallel.open(folder, "train", vocab, t.bos_id, t.eos_id, t.pad_id)

    def save_assets(self, run_dir: Path) -> None:
        self.tgt_tok.save(run_dir / TOKENIZER)
        if self.src_tok is not self.tgt_tok:
            self.src_tok.save(run_dir / SRC_TOKENIZER)
        if self.recaser is not None:
            atomic_write_text(run_dir / RECASER, self.recaser.to_json())

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.train
        return self.train.batches(t.batch_tokens, seed=t.seed * 1_000_003 + epoch)

    def loss(
        self,
        model: nn.Module,
        b: TranslationBatch,
        device: torch.device,
        noise: float = 0.0,
        rdrop: float = 0.0,
    ) -> tuple[Tensor, Tensor, int]:
        """(summed smoothed loss, summed NLL, target tokens) of one batch through `model` (the
        task's, or its distributed wrapper); `noise` is the word dropout on the source, `rdrop`
        the weight of R-Drop's term (0: one pass)."""
        keep = (b.src == self.src_tok.pad_id) | (b.src == self.src_tok.eos_id)
        src = word_dropout(b.src, noise, self.src_tok.unk_id, keep)
        passes = 2 if rdrop else 1
        src, tgt_in, tgt_out = (
            x.repeat(passes, 1).to(device, non_blocking=True) for x in (src, b.tgt_in, b.tgt_out)
        )
        t, pad = self.cfg.train, self.tgt_tok.pad_id
        loss, nll, logits = output_loss(
            lambda: model(src, tgt_in),
            self.model.generator,
            tgt_out,
            t.label_smoothing,
            pad,
            t.loss_chunk,
        )
        if rdrop:
            loss = loss + rdrop * rdrop_kl(logits, tgt_out[: len(b.tgt_out)] != pad)
        return loss, nll, passes * b.n_tokens

    def collate(self, indices: Sequence[int]) -> TranslationBatch:
        return self.train.collate(indices)

    def train_loss(
        self, batch: TranslationBatch, device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]:
        t = self.cfg.train
        return self.loss(model, batch, device, t.word_dropout, t.rdrop)

    @torch.no_grad()
    def validate(self, device: torch.device) -> dict[str, float]:
        if self.valid is None:
            return {}
        nll_sum, n = 0.0, 0
        for indices in self.valid.batches(self.cfg.train.batch_tokens, 0, shuffle=False):
            _, nll, tokens = self.loss(self.model, self.valid.collate(indices), device)
            nll_sum, n = nll_sum + float(nll), n + tokens
        out = {"val_loss": nll_sum / n}
        if self.monitor == "val_bleu":
            hyps = self.translator().translate(self.valid_text[0], beam=1)
            out["val_bleu"] = score_translations(hyps, self.valid_text[1])["bleu"]
        return out

    def translator(self) -> Translator:
        cfg = self.cfg
        return Translator(
            self.model, self.src_tok, self.tgt_tok, cfg.decode, cfg.model.max_len, self.recaser
        )


def load_translator(
    run_dir: str | Path,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> Translator:
    """The translator saved in a run directory, with its chosen weights file."""
    cfg, model = load_run(run_dir, "encoder_decoder", weights, log)
    run_dir = Path(run_dir)
    src_tok, tgt_tok = load_tokenizers(run_dir, cfg)
    recaser = load_recaser(run_dir)
    return Translator(
        place(model, device), src_tok, tgt_tok, cfg.decode, cfg.model.max_len, recaser
    )

"""Word tagging (part-of-speech, named entities) as a training task: <s> words </s> through the
encoder, one tag a word on its first piece (aiayn.tasks.tagger)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.config import RunConfig
from aiayn.data.batching import token_budget_batches
from aiayn.data.noise import BpeDropout, word_dropout
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.tagged import Sentence, read_tagged
from aiayn.models.encoder_only import EncoderTagger
from aiayn.run.files import TOKENIZER
from aiayn.tasks import load_run, load_tokenizer, place, run_tokenizer, vocabulary
from aiayn.tasks.classification import load_labels, save_labels
from aiayn.tasks.tagger import IGNORE, Tagger, labelled_row


def read_sentences(cfg: RunConfig, path: str | Path) -> list[Sentence]:
    """The tagged sentences of `path`, in the run's [data] format and tag column."""
    return read_tagged(path, cfg.data.tagged_format, cfg.data.tag_column)


def tag_indices(sentences: list[Sentence], names: list[str], path: str | Path) -> list[list[int]]:
    """Each sentence's tags as indices into `names`; a tag not among them is an error naming
    the file and the sentence's line."""
    index = {name: i for i, name in enumerate(names)}
    out = []
    for s in sentences:
        unknown = [t for t in s.tags if t not in index]
        if unknown:
            raise ValueError(
                f"{path}: sentence at line {s.line}: tag {unknown[0]!r} was not seen in "
                f"training; the run's tags are {names}"
            )
        out.append([index[t] for t in s.tags])
    return out


class TaggingTask:
    """Everything the trainer needs to know about tagging."""

    monitor, higher_is_better = "val_acc", True

    def __init__(
        self, cfg: RunConfig, run_dir: Path, resume: bool, log: Callable[[str], None] = print
    ) -> None:
        d = cfg.data
        if not (d.train_tagged and d.valid_tagged):
            raise ValueError("a tagger needs data.train_tagged and data.valid_tagged")
        if cfg.train.rdrop:
            raise ValueError(f"train.rdrop={cfg.train.rdrop!r}: R-Drop is for classifiers")
        train = read_sentences(cfg, d.train_tagged)
        self.valid_sentences = read_sentences(cfg, d.valid_tagged)
        # split at whitespace alone: the data has split the words already, and a piece that
        # starts a word must start it where an exported tokenizer's users see it start
        texts = [" ".join(s.words) for s in train]
        tok = run_tokenizer(cfg, run_dir, resume, texts, punctuation=False)
        names = (
            load_labels(run_dir, cfg.model.n_classes)
            if resume
            else sorted({t for s in train for t in s.tags})
        )
        self.valid_tags = tag_indices(self.valid_sentences, names, d.valid_tagged)
        self.cfg = cfg.replace(
            "model", vocab_size=vocabulary(cfg, tok), pad_id=tok.pad_id, n_classes=len(names)
        )
        self.model = EncoderTagger(self.cfg.model)
        self.tagger = Tagger(self.model, tok, names, d.tag_len)
        self.words = [s.words for s in train]
        self.tags = tag_indices(train, names, d.train_tagged)
        try:
            self.dropout = BpeDropout(tok) if cfg.train.subword_dropout else None
        except ValueError as e:
            raise ValueError(f"train.subword_dropout={cfg.train.subword_dropout}: {e}") from None
        self.label_rows()
        log(
            f"{len(train):,} training sentences ({len(self.rows):,} rows of at most "
            f"data.tag_len={d.tag_len} tokens) and {len(self.valid_tags):,} validation "
            f"sentences, {len(names)} tags {names}"
        )

    def save_assets(self, run_dir: Path) -> None:
        self.tagger.tok.save(run_dir / TOKENIZER)
        save_labels(run_dir, self.tagger.labels)

    def label_rows(self, split: Callable[[Sequence[str]], list[list[int]]] | None = None) -> None:
        """The training rows and their labels, each word cut into pieces by `split` (default:
        the tokenizer)."""
        framed, owner = self.tagger.rows(self.words, split)
        self.rows = [row for row, _ in framed]
        self.labels, start = [], 0
        for i, (row, firsts) in enumerate(framed):  # a long sentence's runs follow each other
            start = 0 if i == 0 or owner[i] != owner[i - 1] else start
            tags = self.tags[owner[i]][start:][: len(firsts)]
            self.labels.append(labelled_row(row, firsts, tags))
            start += len(firsts)
        self.lengths = [len(r) for r in self.rows]

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.train
        seed = t.seed * 1_000_003 + epoch
        if self.dropout is not None:  # each word's pieces drawn afresh each epoch (its seed)
            rng, words = random.Random(seed), sorted({w for s in self.words for w in s})
            drawn = {w: self.dropout.pieces(w, t.subword_dropout, rng) or [self.tagger.tok.unk_id]
                     for w in words}  # fmt: skip
            self.label_rows(lambda sentence: [drawn[w] for w in sentence])
        return token_budget_batches(self.lengths, t.batch_tokens, seed=seed)

    def collate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """((B, longest) padded token rows, (B, longest) tags, IGNORE where no word starts)."""
        ids = pad_to_tensor([self.rows[i] for i in indices], self.tagger.tok.pad_id)
        labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
        for row, i in enumerate(indices):
            labels[row, : len(self.labels[i])] = torch.tensor(self.labels[i])
        return ids, labels

    def train_loss(
        self, batch: tuple[Tensor, Tensor], device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]:
        """(summed smoothed loss, summed NLL, words) of one batch through `model`."""
        tok, (ids, y) = self.tagger.tok, batch
        keep = (ids == tok.pad_id) | (ids == tok.bos_id) | (ids == tok.eos_id)
        ids = word_dropout(ids, self.cfg.train.word_dropout, tok.unk_id, keep)
        return tagging_loss(
            model(ids.to(device, non_blocking=True)).float(),
            y.to(device, non_blocking=True),
            self.cfg.train.label_smoothing,
        )

    @torch.no_grad()
    def validate(self, device: torch.device) -> dict[str, float]:
        words = [s.words for s in self.valid_sentences]
        probs = torch.cat(self.tagger.probabilities(words, self.cfg.train.batch_tokens))
        gold = torch.tensor([t for tags in self.valid_tags for t in tags])
        nll = F.nll_loss(probs.clamp(min=1e-12).log(), gold).item()
        return {"val_loss": nll, "val_acc": (probs.argmax(-1) == gold).float().mean().item()}


def tagging_loss(logits: Tensor, labels: Tensor, smoothing: float) -> tuple[Tensor, Tensor, int]:
    """(summed smoothed loss, summed NLL, words) of (B, T, n_tags) logits against (B, T)
    labels; positions labelled IGNORE (continuation pieces, frame, padding) count for nothing."""
    flat, y = logits.flatten(0, 1), labels.flatten()
    loss = F.cross_entropy(flat, y, ignore_index=IGNORE, reduction="sum", label_smoothing=smoothing)
    nll = F.cross_entropy(flat.detach(), y, ignore_index=IGNORE, reduction="sum")
    return loss, nll, int((y != IGNORE).sum())


def load_tagger(
    run_dir: str | Path,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> Tagger:
    cfg, model = load_run(run_dir, "encoder_tagger", weights, log)
    model = place(model, device)
    run_dir, m = Path(run_dir), cfg.model
    tok = load_tokenizer(run_dir, TOKENIZER, m.vocab_size)
    return Tagger(model, tok, load_labels(run_dir, m.n_classes), min(cfg.data.tag_len, m.max_len))

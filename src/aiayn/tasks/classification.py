"""Text classification as a training task: <s> + sentence through the encoder, one label."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiayn.config import RunConfig
from aiayn.data.batching import token_budget_batches
from aiayn.data.noise import word_dropout
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.text import read_labelled, read_lines
from aiayn.data.tokenizer import TextTokenizer
from aiayn.models.encoder_only import EncoderClassifier
from aiayn.prepare.dataset import (
    MANIFEST,
    Side,
    check_dataset,
    load_array,
    prepared_tokenizer,
    read_manifest,
)
from aiayn.run.atomic import atomic_write_text
from aiayn.run.files import TOKENIZER
from aiayn.run.paths import inside
from aiayn.tasks import load_run, load_tokenizer, place, run_tokenizer, vocabulary
from aiayn.train.loss import rdrop_kl

LABELS = "labels.txt"
MAX_LABELS_BYTES = 16 << 20  # one class name a line


def save_labels(run_dir: Path, names: list[str]) -> None:
    """The class names, one a line, in class-index order."""
    atomic_write_text(run_dir / LABELS, "".join(f"{n}\n" for n in names))


def load_labels(run_dir: Path, n_classes: int) -> list[str]:
    """The run's class names, refused unless there is one per class of its model."""
    path = inside(run_dir, LABELS)
    names = read_lines(path, MAX_LABELS_BYTES)
    if len(names) != n_classes or len(set(names)) != len(names):
        raise ValueError(
            f"{path}: {len(names)} lines ({len(set(names))} distinct); the model has "
            f"{n_classes} classes, one distinct name a line expected"
        )
    return names


class LabelPredictor:
    """What `classify` and `evaluate` ask of a classifier: class probabilities per text."""

    labels: list[str]

    def probabilities(self, texts: list[str]) -> Tensor:
        raise NotImplementedError

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """The most likely label of each text, with its probability."""
        best = self.probabilities(texts).max(dim=-1)
        pairs = zip(best.values.tolist(), best.indices.tolist(), strict=True)
        return [(self.labels[i], p) for p, i in pairs]


class Classifier(LabelPredictor):
    """A trained classifier with its tokenizer and label names."""

    def __init__(
        self,
        model: EncoderClassifier,
        tok: TextTokenizer,
        labels: list[str],
        max_len: int,
        end_token: bool = False,
    ) -> None:
        self.model, self.tok, self.labels, self.max_len = model, tok, labels, max_len
        self.end_token = end_token

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.frame(self.tok.encode(texts))

    def frame(self, rows: list[list[int]]) -> list[list[int]]:
        """<s> (the pooled position) then the tokens, cut to max_len; with `end_token`, </s>
        closes each text (BERT's [CLS] text [SEP])."""
        if not self.end_token:
            return [[self.tok.bos_id, *ids][: self.max_len] for ids in rows]
        room = self.max_len - 2
        return [[self.tok.bos_id, *ids[:room], self.tok.eos_id] for ids in rows]

    def framed_lengths(self, lengths: np.ndarray) -> np.ndarray:
        """The lengths `frame` gives rows of `lengths` tokens."""
        if not self.end_token:
            return np.minimum(lengths + 1, self.max_len)
        return np.minimum(lengths, self.max_len - 2) + 2

    def logits(self, rows: list[list[int]]) -> Tensor:
        # rows: B lists of ids -> (B, n_classes)
        return self.model(pad_to_tensor(rows, self.tok.pad_id).to(self.device))

    @torch.no_grad()
    def probabilities(self, texts: list[str], batch_tokens: int = 8000) -> Tensor:
        """(N, n_classes) class probabilities, batched by length, in input order."""
        self.model.eval()
        rows = self.ids(texts)
        out = torch.zeros(len(texts), len(self.labels))
        for batch in token_budget_batches([len(r) for r in rows], batch_tokens, 0, False):
            out[batch] = self.logits([rows[i] for i in batch]).float().softmax(-1).cpu()
        if not bool(torch.isfinite(out).all()):
            raise ValueError("the model gave non-finite probabilities (NaN or inf)")
        return out


class Ensemble(LabelPredictor):
    """Classifiers trained apart (from other seeds, say) voting with their mean probabilities."""

    def __init__(self, members: list[Classifier]) -> None:
        for m in members[1:]:
            if m.labels != members[0].labels:
                raise ValueError(
                    f"an ensemble's classifiers must share their labels: "
                    f"{members[0].labels} and {m.labels} differ"
                )
        self.members, self.labels = members, members[0].labels

    def probabilities(self, texts: list[str]) -> Tensor:
        # (N, n_classes)
        return torch.stack([m.probabilities(texts) for m in self.members]).mean(0)


class ClassificationTask:
    """Everything the trainer needs to know about classification."""

    monitor, higher_is_better = "val_acc", True

    def __init__(
        self, cfg: RunConfig, run_dir: Path, resume: bool, log: Callable[[str], None] = print
    ) -> None:
        d = cfg.data
        if not d.valid_tsv or not (d.train_tsv or d.prepared):
            raise ValueError("a classifier needs data.train_tsv and data.valid_tsv")
        self.valid_texts, valid_labels = read_labelled(d.valid_tsv)
        if d.prepared:
            tok, names, side, labels = open_labelled(Path(d.prepared), cfg, run_dir, resume)
        else:
            texts, labels = read_labelled(d.train_tsv)
            tok = run_tokenizer(cfg, run_dir, resume, texts)
            names = load_labels(run_dir, cfg.model.n_classes) if resume else sorted(set(labels))
        unknown = sorted(set(valid_labels) - set(names))
        if unknown:
            raise ValueError(f"{d.valid_tsv}: label {unknown[0]!r} is not among {names}")
        self.cfg = cfg.replace(
            "model", vocab_size=vocabulary(cfg, tok), pad_id=tok.pad_id, n_classes=len(names)
        )
        self.model = EncoderClassifier(self.cfg.model)
        self.classifier = Classifier(self.model, tok, names, d.truncate_len, d.end_token)
        index = {name: i for i, name in enumerate(names)}
        if d.prepared:  # token rows read from disk batch by batch
            self.rows = lambda ids: self.classifier.frame(side.row_lists(ids))
            self.lengths = self.classifier.framed_lengths(side.lengths())
            self.labels = labels.tolist()
        else:
            rows = self.classifier.ids(texts)
            self.rows = lambda ids: [rows[i] for i in ids]
            self.lengths, self.labels = [len(r) for r in rows], [index[y] for y in labels]
        self.valid = torch.tensor([index[y] for y in valid_labels])
        log(
            f"{len(self.labels):,} training and {len(self.valid):,} validation texts, "
            f"labels {names}"
        )

    def save_assets(self, run_dir: Path) -> None:
        self.classifier.tok.save(run_dir / TOKENIZER)
        save_labels(run_dir, self.classifier.labels)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        t = self.cfg.train
        return token_budget_batches(self.lengths, t.batch_tokens, seed=t.seed * 1_000_003 + epoch)

    def collate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """((B, longest) padded token rows, (B,) class indices)."""
        ids = pad_to_tensor(self.rows(indices), self.classifier.tok.pad_id)
        return ids, torch.tensor([self.labels[i] for i in indices])

    def train_loss(
        self, batch: tuple[Tensor, Tensor], device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]:
        """(summed smoothed loss, summed NLL, examples) of one batch through `model`."""
        tok, (ids, y) = self.classifier.tok, batch
        keep = (ids == tok.pad_id) | (ids == tok.bos_id)
        t = self.cfg.train
        passes = 2 if t.rdrop else 1
        ids = word_dropout(ids, t.word_dropout, tok.unk_id, keep).repeat(passes, 1)
        logits = model(ids.to(device, non_blocking=True)).float()  # (passes * B, n_classes)
        y = y.to(device, non_blocking=True).repeat(passes)
        loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=t.label_smoothing)
        if t.rdrop:
            loss = loss + t.rdrop * rdrop_kl(logits, torch.ones(len(y) // passes, device=device))
        return loss, F.cross_entropy(logits.detach(), y, reduction="sum"), len(y)

    @torch.no_grad()
    def validate(self, device: torch.device) -> dict[str, float]:
        probs = self.classifier.probabilities(self.valid_texts, self.cfg.train.batch_tokens)
        nll = F.nll_loss(probs.clamp(min=1e-12).log(), self.valid).item()
        return {"val_loss": nll, "val_acc": (probs.argmax(-1) == self.valid).float().mean().item()}


def open_labelled(
    folder: Path, cfg: RunConfig, run_dir: Path, resume: bool
) -> tuple[TextTokenizer, list[str], Side, np.ndarray]:
    """The tokenizer, class names, token rows and class indices of a prepared training TSV."""
    manifest = read_manifest(folder, "classification")
    check_dataset(folder, manifest, cfg.data)
    names = manifest.get("labels")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{folder / MANIFEST}: field 'labels' is not a list of class names")
    # a fine-tuning's tokenizer is its base's
    base = Path(cfg.train.init) if cfg.train.init and not resume else run_dir
    tok = prepared_tokenizer(folder, base, resume or bool(cfg.train.init))
    if resume and load_labels(run_dir, cfg.model.n_classes) != names:
        raise ValueError(f"{folder}: its labels differ from those {run_dir} was trained with")
    side = Side(folder, "train", "text", tok.vocab_size)
    labels = load_array(folder, "train.labels.npy", ("int64",))
    if len(labels) != len(side) or (
        len(labels) and not 0 <= labels.min() <= labels.max() < len(names)
    ):
        raise ValueError(f"{folder / 'train.labels.npy'}: not one class index per text")
    return tok, names, side, labels


def load_classifier(
    run_dir: str | Path,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> Classifier:
    cfg, model = load_run(run_dir, "encoder_classifier", weights, log)
    model = place(model, device)
    run_dir, m, d = Path(run_dir), cfg.model, cfg.data
    tok = load_tokenizer(run_dir, TOKENIZER, m.vocab_size)
    labels = load_labels(run_dir, m.n_classes)
    return Classifier(model, tok, labels, min(d.truncate_len, m.max_len), d.end_token)


def load_classifiers(
    run_dirs: list[str],
    weights: str | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> LabelPredictor:
    """The classifier of one run directory, or the ensemble of several."""
    members = [load_classifier(d, weights, device, log) for d in run_dirs]
    return members[0] if len(members) == 1 else Ensemble(members)
